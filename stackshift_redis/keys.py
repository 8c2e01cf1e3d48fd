"""The only place Redis key names are built.

Every key of a namespace carries the hash tag `{namespace}`, so every script is
atomic over the whole namespace and runs unchanged on Redis Cluster. Keys are
`ss:{ns}:` + parts joined by `:`; `lua/lib/key.lua` renders the same strings.
"""

from __future__ import annotations

import re

from .errors import InvalidArgumentError

NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
GROUP = "workers"
STATUSES = ("queued", "scheduled", "running", "waiting", "completed", "failed", "cancelled")


def check_name(kind: str, name: object) -> str:
    """Validate a job, queue, namespace or event name: `[A-Za-z0-9_.:-]{1,128}`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgumentError(f"invalid {kind} name {name!r}: use [A-Za-z0-9_.:-]{{1,128}}")
    return name


class Keys:
    """Key names of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = check_name("namespace", namespace)
        self.prefix = f"ss:{{{namespace}}}:"

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # runs
    def run(self, run_id: str) -> str:
        """HASH: a run's fields, step results (`s:<name>`) and timeline (`t:<n>`)."""
        return self._k("run", run_id)

    def idem(self, job: str, key: str) -> str:
        """STRING: idempotency key -> run id."""
        return self._k("idem", job, key)

    def idx_status(self, status: str) -> str:
        """ZSET: run ids with that status, scored by when they entered it (ms)."""
        return self._k("idx", status)

    def idx_job_status(self, job: str, status: str) -> str:
        """ZSET: run ids of a job with that status."""
        return self._k("idxj", job, status)

    def done(self) -> str:
        """STREAM: ids of finished runs that somebody awaits (capped)."""
        return self._k("done")

    def control(self) -> str:
        """STREAM: cancel requests for running runs, read by every worker (capped)."""
        return self._k("ctl")

    def seq(self) -> str:
        """STRING: counter for run ids made inside scripts (event-started runs)."""
        return self._k("seq")

    def jobs(self) -> str:
        """HASH: job name -> queue, published by workers."""
        return self._k("jobs")

    # queues
    def stream(self, queue: str) -> str:
        """STREAM: run ids ready to execute; consumer group `workers`."""
        return self._k("q", queue, "stream")

    def delayed(self, queue: str) -> str:
        """ZSET: run id -> due time (ms) for delayed runs, retries and timers."""
        return self._k("q", queue, "delayed")

    def leases(self, queue: str) -> str:
        """ZSET: run id -> lease expiry (ms) of claimed runs."""
        return self._k("q", queue, "leases")

    def queue_conf(self, queue: str) -> str:
        """HASH: queue settings shared by every process (concurrency, visibility)."""
        return self._k("q", queue, "conf")

    def workers(self) -> str:
        """ZSET: worker id -> heartbeat expiry (ms)."""
        return self._k("workers")

    # state
    def state(self, name: str) -> str:
        """STRING: a state value (msgpack) or counter."""
        return self._k("st", name)

    def lock(self, name: str) -> str:
        """STRING: lock token."""
        return self._k("lock", name)

    # events
    def event_seen(self, event_id: str) -> str:
        """STRING: marks an event id as recorded (dedupe window)."""
        return self._k("evid", event_id)

    def event_shapes(self, event: str) -> str:
        """HASH: match shape (paths) -> number of waiters with that shape."""
        return self._k("ev", event, "shapes")

    def event_waiters(self, event: str, shape: str, values_key: str) -> str:
        """SET: run ids waiting for `event` whose match on paths `shape` has these values."""
        return self._k("ev", event, "w", shape, values_key)

    def event_log(self, event: str) -> str:
        """ZSET: recent event ids of that name by time (ms), for lookback."""
        return self._k("ev", event, "log")

    def event_data(self, event: str) -> str:
        """HASH: recent event id -> recorded event, for lookback."""
        return self._k("ev", event, "data")

    def triggers(self, event: str) -> str:
        """HASH: job -> queue of jobs started by that event."""
        return self._k("trig", event)
