"""bullmq (Python package) driver: `Queue.add`, bulk = `Queue.addBulk`. Worker =
`bullmq.Worker` at defaults (concurrency=1, as in BullMQ), closed on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from importlib.metadata import version
from typing import Any

from _common import Peer, main, mark
from bullmq import Queue, Worker

QUEUE = "bench"


async def noop(job: Any, token: str) -> None:
    mark(b"S")
    mark(b"E")


async def connect(url: str) -> Queue:
    return Queue(QUEUE, {"connection": url})


async def enqueue(q: Queue, i: int) -> None:
    await q.add("noop", {"i": i})


async def bulk(q: Queue, items: list[int]) -> None:
    await q.addBulk([{"name": "noop", "data": {"i": i}} for i in items])


async def close(q: Queue) -> None:
    await q.close()


async def _work(url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(QUEUE, noop, {"connection": url})
    await stop.wait()
    await worker.close()


def run_worker(url: str) -> None:
    asyncio.run(_work(url))


if __name__ == "__main__":
    main(Peer("bullmq", version("bullmq"), connect, enqueue, bulk, close, run_worker))
