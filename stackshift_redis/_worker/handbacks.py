"""Log lines for runs a worker hands back (a job or job version it does not register).

During a rolling deploy a worker of old code takes runs pinned to the new version, and a
worker of new code may take runs of jobs it dropped: each is handed back, possibly once a
second for minutes. One WARNING per run (the first hand-back of that run by this process)
and one INFO summary per minute (counts per job and version) say so; every further
hand-back of the same run is logged at DEBUG only.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from typing import Any

log = logging.getLogger("stackshift.worker")
SUMMARY_S = 60.0
REMEMBERED = 10_000  # run ids remembered (oldest forgotten first)


class HandBackLog:
    """Which runs this process handed back already, and counts for the summary."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._counts: Counter[tuple[str, int]] = Counter()
        self._since = time.monotonic()

    def note(
        self,
        run_id: str,
        job: str,
        version: int,
        queue: str,
        has_job: bool,
        failed: bool,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Log the hand-back of one run (see the module docstring); `failed`: the run
        failed instead, as no worker that has its job took it within the hand-back limit
        (one ERROR line)."""
        what = f"version {version} of job {job!r}" if has_job else f"job {job!r}"
        if failed:
            self._seen.pop(run_id, None)
            log.error(
                "run %s failed: %s is not registered in this worker (queue %s), and no "
                "worker that has it took the run within the hand-back limit",
                run_id,
                what,
                queue,
                extra=extra,
            )
            return
        if run_id in self._seen:
            self._seen.move_to_end(run_id)
            log.debug(
                "run %s handed back again (%s not registered here)", run_id, what, extra=extra
            )
        else:
            self._seen[run_id] = None
            if len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)
            log.warning(
                "run %s: %s is not registered in this worker (queue %s): handed back for a "
                "worker that has it (it waits queued while no live worker has it)",
                run_id,
                what,
                queue,
                extra=extra,
            )
        self._counts[(job, version)] += 1
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Log the summary when a minute has passed since the last one (or `force`)."""
        now = time.monotonic()
        if not self._counts or (not force and now - self._since < SUMMARY_S):
            return
        parts = ", ".join(f"{j} v{v}: {n}" for (j, v), n in sorted(self._counts.items()))
        log.info("handed back in the last %.0fs: %s", now - self._since, parts)
        self._counts.clear()
        self._since = now
