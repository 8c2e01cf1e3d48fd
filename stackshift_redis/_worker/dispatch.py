"""The worker's side of the take path: take ready runs (one script call for all queues of
a partition), and when a take comes back short, block on the queues' streams for a
wake-up ticket.

Runs wait in per-queue ready sets (lua/lib/make_ready.lua); the streams carry only
tickets, read through the consumer group so that one ticket wakes one worker. Reads use
NOACK: a ticket names no run, so nothing is pending and nothing needs recovery; a lost
ticket costs at most one `block_ms` wait, after which the worker takes again anyway.

With P > 1 partitions (docs/design/partitions.md D7) every partition has its own streams.
A take calls each partition's `take` in turn (those whose tickets woke the worker first)
until it has enough runs. On standalone Redis one XREADGROUP blocks on every partition's
streams; on a Redis Cluster keys of several slots in one call fail (CROSSSLOT), so one
XREADGROUP per partition blocks (each on its own connection) until the first answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from .._core.jobs import QueueConfig
from .._core.keys import GROUP
from .._core.namespace import Namespace
from .._core.scripts import TakeReply
from .permits import Permits

QUIET_GRACE_S = 0.2  # on a cluster: how long a quiet wait lets the other reads end


async def create_groups(ns: Namespace, queues: Sequence[str]) -> None:
    """Create each queue's stream and consumer group on every partition (idempotent)."""
    for keys in ns.part_keys:
        for q in queues:
            try:
                await ns.redis.xgroup_create(keys.stream(q), GROUP, "$", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise


class Dispatcher:
    """Takes runs of `queues` for one worker (consumer `consumer`); `conf` gives a
    queue's effective settings (registration.py)."""

    def __init__(
        self,
        ns: Namespace,
        queues: Sequence[str],
        consumer: str,
        conf: Callable[[str], QueueConfig],
    ) -> None:
        self.ns = ns
        self.queues = list(queues)
        self.consumer = consumer
        self.conf = conf
        self._turn = 0
        self._part_turn = 0  # the partition a take starts with, unless tickets woke others
        self._woken: list[int] = []  # partitions whose tickets woke the last wait
        self._streams = {ns.keys.stream(q): q for q in self.queues}
        # stream key -> partition; per partition its streams (P > 1)
        self._part_of_stream = {
            k.stream(q): p for p, k in enumerate(ns.part_keys) for q in self.queues
        }
        self._part_streams = [[k.stream(q) for q in self.queues] for k in ns.part_keys]
        self.permits = Permits(ns, consumer, conf)  # global concurrency limits (P > 1)

    async def setup(self) -> None:
        """Create each queue's stream and consumer group (idempotent)."""
        await create_groups(self.ns, self.queues)

    async def take(self, n: int) -> TakeReply:
        """Lease up to `n` runs; queues (and partitions) take turns at going first."""
        qs = self.queues[self._turn :] + self.queues[: self._turn]
        self._turn = (self._turn + 1) % len(self.queues)
        pairs = [(q, round(self.conf(q).visibility_timeout * 1000)) for q in qs]
        settings = self.ns.settings
        if self.ns.partitions == 1:
            return await self.ns.scripts.take(
                pairs,
                n,
                max_deliveries=settings.max_deliveries,
                retention_ms=settings.retention_ms,
                taker=self.consumer,
            )
        free = [pair for pair in pairs if not self.permits.limit(pair[0])]
        reply = await self._take_parts(free, n) if free else TakeReply([], [])
        for pair in pairs:  # limited queues: a permit per run (permits.py)
            room = n - len(reply.taken)
            if room <= 0 or not self.permits.limit(pair[0]):
                continue
            granted = await self.permits.take(pair[0], room)
            if not granted:
                continue
            got = await self._take_parts([pair], len(granted))
            await self.permits.bind(pair[0], granted, [r.run_id for r in got.taken])
            reply.taken.extend(got.taken)
            reply.dropped.extend(got.dropped)
        return reply

    async def _take_parts(self, pairs: list[tuple[str, int]], n: int) -> TakeReply:
        """Up to `n` runs of `pairs`' queues from the partitions in turn."""
        settings = self.ns.settings
        reply = TakeReply([], [])
        for p in self._take_order():
            got = await self.ns.part_scripts(p).take(
                pairs,
                n - len(reply.taken),
                max_deliveries=settings.max_deliveries,
                retention_ms=settings.retention_ms,
                taker=self.consumer,
            )
            reply.taken.extend(got.taken)
            reply.dropped.extend(got.dropped)
            if len(reply.taken) >= n:
                break
        return reply

    def _take_order(self) -> list[int]:
        """The partitions in the order a take visits them: those whose tickets woke the
        worker, then the rest round robin (the start moves on by one each take)."""
        count = self.ns.partitions
        start = self._part_turn
        self._part_turn = (start + 1) % count
        woken, self._woken = self._woken, []
        rest = [(start + i) % count for i in range(count)]
        return woken + [p for p in rest if p not in woken]

    async def wait(self, count: int, block_ms: int) -> bool:
        """Block until a ticket arrives on any queue (True) or `block_ms` passes (False)."""
        if self.ns.partitions > 1 and isinstance(self.ns.redis, RedisCluster):
            return await self._wait_each(count, block_ms)
        keys = self._streams if self.ns.partitions == 1 else self._part_of_stream
        streams = {key: ">" for key in keys}
        reply = await self.ns.redis.xreadgroup(
            GROUP, self.consumer, streams, count=max(1, count), block=block_ms, noack=True
        )
        if self.ns.partitions > 1:
            woken = {self._part_of_stream[_text(key)] for key, _ in reply or []}
            self._woken = sorted(woken)
        return bool(reply)

    async def _wait_each(self, count: int, block_ms: int) -> bool:
        """Redis Cluster: one blocking XREADGROUP per partition (its streams share one
        slot), at once; the first ticket ends the wait and the other reads are cancelled
        (a cancelled read costs its connection). When the block ends quietly, the other
        reads end with it (same block): they are let end rather than cancelled."""
        tasks = {
            asyncio.ensure_future(self._read_part(p, count, block_ms)): p
            for p in range(self.ns.partitions)
        }
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if pending and all(_quiet(t) for t in done):
                await asyncio.wait(pending, timeout=QUIET_GRACE_S)
        finally:  # redis-py can lose a cancel that lands while it connects: cancel again
            pending = {t for t in tasks if not t.done()}
            while pending:
                for t in pending:
                    t.cancel()
                _, pending = await asyncio.wait(pending, timeout=0.02)
        woken: list[int] = []
        error: BaseException | None = None
        for task, p in tasks.items():  # tickets read by reads that ended before the cancel
            if not task.done() or task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                error = error or exc
            elif task.result():
                woken.append(p)
        self._woken = woken
        if not woken and error is not None:
            raise error
        return bool(woken)

    async def _read_part(self, part: int, count: int, block_ms: int) -> bool:
        streams = {key: ">" for key in self._part_streams[part]}
        reply: Any = await self.ns.redis.xreadgroup(
            GROUP, self.consumer, streams, count=max(1, count), block=block_ms, noack=True
        )
        return bool(reply)


def _quiet(task: asyncio.Future[bool]) -> bool:
    """A read that ended with no ticket and no error (its block passed)."""
    return not task.cancelled() and task.exception() is None and not task.result()


def _text(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)
