"""A warning when runs are started on a queue that no live worker consumes.

Workers refresh `keys.qlive()` (queue -> heartbeat expiry) with each heartbeat
(lua/register.lua). A start checks its queue there at most once per `CHECK_S` per queue,
so the cost is one ZSCORE and one TIME every half minute, and warns when no worker has
consumed that queue lately: the runs wait until one does (a typo in `queue_name=`, a job
moved to another queue by a deploy, or no worker started yet).
"""

from __future__ import annotations

import logging
import time

from .._core.namespace import Namespace

log = logging.getLogger("stackshift.client")
CHECK_S = 30.0


class ConsumerWatch:
    """Remembers when each queue was last checked."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns
        self._checked: dict[str, float] = {}

    async def check(self, job: str, queue: str) -> bool:
        """Warn (once per CHECK_S) when `queue` has no live consumer; True when it has one
        or was checked recently. Errors are ignored: the runs were written already."""
        now = time.monotonic()
        if now - self._checked.get(queue, -CHECK_S) < CHECK_S:
            return True
        self._checked[queue] = now
        try:
            r = self._ns.redis
            expiry = await r.zscore(self._ns.keys.qlive(), queue)
            secs, micros = await r.time()
        except Exception:
            return True
        if expiry is not None and float(expiry) >= secs * 1000 + micros / 1000:
            return True
        log.warning(
            "run of job %r started on queue %r, which no live worker consumes: it waits "
            "until a worker for %r starts (check queue_name= and the workers' --queue)",
            job,
            queue,
            queue,
        )
        return False
