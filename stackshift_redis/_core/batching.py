"""One batch per event-loop tick: what callers submit during one iteration of the loop
is sent together on the next one (the start coalescer, the worker's finishes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class TickBatcher(Generic[K, I, R]):
    """Collects `submit(key, item)` calls made in one loop iteration and, on the next,
    calls `send(key, items)` once per key (at most `limit` items a call; 0: no limit),
    each send in a task of its own. `submit` returns its item's reply; an exception
    `send` raises is raised to every caller of that batch.

    `eager`: a submit made while nothing is pending or being sent (one call at a time,
    awaited in turn) is sent at once, in the caller's task: no loop tick, no task. Those
    made while it is in flight are batched as usual."""

    def __init__(
        self,
        send: Callable[[K, list[I]], Awaitable[Sequence[R]]],
        limit: int = 0,
        *,
        eager: bool = False,
    ) -> None:
        self._send = send
        self._limit = limit
        self._eager = eager
        self._direct = 0  # eager sends in flight
        self._pending: dict[K, list[tuple[I, asyncio.Future[R]]]] = {}
        self._scheduled = False
        self._sending: set[asyncio.Future[None]] = set()

    async def submit(self, key: K, item: I) -> R:
        """Add `item` to this tick's batch for `key`; its reply once the batch was sent."""
        if self._eager and not (self._direct or self._pending or self._sending):
            self._direct += 1
            try:
                [reply] = await self._send(key, [item])
            finally:
                self._direct -= 1
            return reply
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._pending.setdefault(key, []).append((item, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        groups, self._pending = self._pending, {}
        for key, items in groups.items():
            step = self._limit or len(items)
            for lo in range(0, len(items), step):
                task = asyncio.ensure_future(self._deliver(key, items[lo : lo + step]))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _deliver(self, key: K, items: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            replies = await self._send(key, [item for item, _ in items])
        except Exception as exc:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        except BaseException:  # cancelled: the callers are told, then it propagates
            for _, fut in items:
                fut.cancel()
            raise
        for (_, fut), reply in zip(items, replies, strict=True):
            if not fut.done():
                fut.set_result(reply)

    async def flush(self) -> None:
        """Send what is pending now and wait until no batch is being sent."""
        self._flush()
        while self._sending:
            await asyncio.wait(set(self._sending))
