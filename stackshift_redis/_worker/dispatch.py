"""The worker's side of the take path: take ready runs (one script call for all queues),
and when a take comes back short, block on the queues' streams for a wake-up ticket.

Runs wait in per-queue ready sets (lua/lib/make_ready.lua); the streams carry only
tickets, read through the consumer group so that one ticket wakes one worker. Reads use
NOACK: a ticket names no run, so nothing is pending and nothing needs recovery; a lost
ticket costs at most one `block_ms` wait, after which the worker takes again anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis.exceptions import ResponseError

from .._core.jobs import QueueConfig
from .._core.keys import GROUP
from .._core.namespace import Namespace
from .._core.scripts import TakeReply


async def create_groups(ns: Namespace, queues: Sequence[str]) -> None:
    """Create each queue's stream and consumer group (idempotent)."""
    for q in queues:
        try:
            await ns.redis.xgroup_create(ns.keys.stream(q), GROUP, "$", mkstream=True)
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
        self._streams = {ns.keys.stream(q): q for q in self.queues}

    async def setup(self) -> None:
        """Create each queue's stream and consumer group (idempotent)."""
        await create_groups(self.ns, self.queues)

    async def take(self, n: int) -> TakeReply:
        """Lease up to `n` runs; queues take turns at going first."""
        qs = self.queues[self._turn :] + self.queues[: self._turn]
        self._turn = (self._turn + 1) % len(self.queues)
        pairs = [(q, round(self.conf(q).visibility_timeout * 1000)) for q in qs]
        settings = self.ns.settings
        return await self.ns.scripts.take(
            pairs,
            n,
            max_deliveries=settings.max_deliveries,
            retention_ms=settings.retention_ms,
            taker=self.consumer,
        )

    async def wait(self, count: int, block_ms: int) -> bool:
        """Block until a ticket arrives on any queue (True) or `block_ms` passes (False)."""
        streams = {key: ">" for key in self._streams}
        reply = await self.ns.redis.xreadgroup(
            GROUP, self.consumer, streams, count=max(1, count), block=block_ms, noack=True
        )
        return bool(reply)
