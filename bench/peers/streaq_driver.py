"""streaq driver: `noop.enqueue(i)` awaited; bulk = `Worker.enqueue_many`. Worker =
`streaq.Worker` at defaults (concurrency=16, asyncio backend) via `run_sync()`, i.e. what
`streaq run` does, without its INFO-per-task log config."""

from __future__ import annotations

from contextlib import AsyncExitStack
from importlib.metadata import version
from typing import Any

from _common import Peer, main, mark, redis_url
from streaq import Worker


def make_worker(url: str) -> Worker[Any]:
    w: Worker[Any] = Worker(redis_url=url)

    @w.task(name="noop")
    async def noop(i: int) -> None:
        mark(b"S")
        mark(b"E")

    return w


worker = make_worker(redis_url())


async def connect(url: str) -> tuple[Any, AsyncExitStack]:
    w, stack = make_worker(url), AsyncExitStack()
    await stack.enter_async_context(w)
    return w, stack


async def enqueue(c: tuple[Any, AsyncExitStack], i: int) -> None:
    await c[0].registry["noop"].enqueue(i)


async def bulk(c: tuple[Any, AsyncExitStack], items: list[int]) -> None:
    task = c[0].registry["noop"]
    await c[0].enqueue_many([task.enqueue(i) for i in items])


async def close(c: tuple[Any, AsyncExitStack]) -> None:
    await c[1].aclose()


def run_worker(url: str) -> None:
    make_worker(url).run_sync()


if __name__ == "__main__":
    main(Peer("streaq", version("streaq"), connect, enqueue, bulk, close, run_worker))
