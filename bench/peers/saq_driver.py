"""saq driver: `Queue.from_url(...).enqueue("noop", i=...)`; saq has no bulk enqueue
(`map` is a gather of `enqueue` that also waits for results). Worker = `saq.worker.start`
on the settings below, at defaults (concurrency=10), without the CLI's logging setup."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from _common import Peer, main, mark, redis_url
from saq import Queue
from saq.worker import start


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    mark(b"S")
    mark(b"E")


async def connect(url: str) -> Queue:
    q = Queue.from_url(url)
    await q.connect()
    return q


async def enqueue(q: Queue, i: int) -> None:
    await q.enqueue("noop", i=i)


async def close(q: Queue) -> None:
    await q.disconnect()


settings = {"queue": Queue.from_url(redis_url()), "functions": [noop]}


def run_worker(url: str) -> None:
    settings["queue"] = Queue.from_url(url)
    start("saq_driver.settings")


if __name__ == "__main__":
    main(Peer("saq", version("saq"), connect, enqueue, None, close, run_worker))
