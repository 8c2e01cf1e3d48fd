"""A queue's global concurrency limit with partitions (lua/permits.lua).

With one partition, `take` counts the queue's leases against its limit in the same
script. With several, each partition's take sees only its own leases, so a worker asks
the namespace for permits before it takes runs of a limited queue: one permit per run,
held while the run runs, renewed with the worker's leases and given back when the run
ends. A permit of a dead worker expires with its lease. A worker refused a permit is
woken by the give-back that frees one (a ticket on each partition's stream).

Cost: one call per take of a limited queue, one per finished run, and one renewal per
queue every third of the lease; nothing with one partition or for unlimited queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable

from .._core.jobs import QueueConfig
from .._core.namespace import Namespace

log = logging.getLogger("stackshift.worker")


class Permits:
    """One worker's permits of the limited queues it serves (partitions only)."""

    def __init__(self, ns: Namespace, worker_id: str, conf: Callable[[str], QueueConfig]) -> None:
        self.ns = ns
        self.worker_id = worker_id
        self.conf = conf
        self.held: dict[str, tuple[str, str]] = {}  # run id -> (queue, permit id)
        self._ids = itertools.count()
        self._renewer: asyncio.Task[None] | None = None
        self._giving: set[asyncio.Task[None]] = set()

    def limit(self, queue: str) -> int:
        """The queue's global limit when permits enforce it (P > 1), else 0."""
        if self.ns.partitions == 1:
            return 0
        return self.conf(queue).concurrency or 0

    def _lease_ms(self, queue: str) -> int:
        return round(self.conf(queue).visibility_timeout * 1000)

    async def take(self, queue: str, want: int) -> list[str]:
        """Up to `want` new permits of `queue` (fewer when the limit is reached)."""
        ids = [f"{self.worker_id}:{next(self._ids)}" for _ in range(want)]
        granted = await self.ns.scripts.permits(
            queue, "take", self.limit(queue), self._lease_ms(queue), ids
        )
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew_loop(), name="stackshift-permits")
        return [g.decode() if isinstance(g, bytes) else str(g) for g in granted]

    async def bind(self, queue: str, granted: list[str], run_ids: list[str]) -> None:
        """Hold a permit per taken run; give back the ones no run took."""
        for run_id, permit in zip(run_ids, granted, strict=False):
            self.held[run_id] = (queue, permit)
        await self.give(queue, granted[len(run_ids) :])

    def finished(self, run_id: str) -> None:
        """The run's attempt ended here: give its permit back (in the background)."""
        held = self.held.pop(run_id, None)
        if held is None:
            return
        task = asyncio.ensure_future(self._give_quietly(held[0], [held[1]]))
        self._giving.add(task)
        task.add_done_callback(self._giving.discard)

    async def give(self, queue: str, ids: list[str]) -> None:
        """Give permits back; wake the queue's workers when one was refused meanwhile."""
        if not ids:
            return
        woke = await self.ns.scripts.permits(queue, "give", 0, 0, ids)
        if int(woke):
            async with self.ns.redis.pipeline(transaction=False) as pipe:
                for keys in self.ns.part_keys:
                    pipe.xadd(keys.stream(queue), {"t": "1"}, maxlen=1000, approximate=True)
                await pipe.execute()

    async def _give_quietly(self, queue: str, ids: list[str]) -> None:
        try:
            await self.give(queue, ids)
        except Exception as exc:  # it expires with its lease anyway
            log.warning("queue %s: giving back a concurrency permit failed: %s", queue, exc)

    async def _renew_loop(self) -> None:
        while self.held:
            by_queue: dict[str, list[str]] = {}
            for queue, permit in self.held.values():
                by_queue.setdefault(queue, []).append(permit)
            pause = min(self._lease_ms(q) for q in by_queue) / 3000
            await asyncio.sleep(pause)
            for queue, ids in by_queue.items():
                with contextlib.suppress(Exception):  # retried next round; else it expires
                    await self.ns.scripts.permits(queue, "renew", 0, self._lease_ms(queue), ids)

    async def close(self) -> None:
        """Give back every permit held (a worker stopping) and stop renewing."""
        if self._renewer is not None:
            self._renewer.cancel()
        by_queue: dict[str, list[str]] = {}
        for queue, permit in self.held.values():
            by_queue.setdefault(queue, []).append(permit)
        self.held.clear()
        for queue, ids in by_queue.items():
            with contextlib.suppress(Exception):
                await self.give(queue, ids)
        if self._giving:
            await asyncio.gather(*self._giving, return_exceptions=True)
