"""The only place Redis key names are built, for Python and for Lua.

Every key of a namespace carries the hash tag `{namespace}` (with partitions, one tag per
partition: partitions.py), so every script is atomic over the keys it touches and runs
unchanged on Redis Cluster. `Keys` renders the shapes of `key_shapes.SHAPES` (each key's
type and meaning) as `ss:{ns}:` plus their parts joined by `:`; `luasrc.lua_keys()`
renders the same shapes as the Lua table `K` that scripts include with
`-- @include keys.lua`, so a script that must find a key at run time (a run id read from a
sorted set) spells no key name itself.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgumentError
from .key_shapes import PLANS as PLANS
from .key_shapes import SHAPES as SHAPES
from .key_shapes import STATUSES as STATUSES
from .key_shapes import UNTIMED as UNTIMED
from .key_shapes import escape as escape
from .key_shapes import parse as parse
from .key_shapes import render
from .key_shapes import scan_pattern as scan_pattern
from .key_shapes import unescape as unescape

NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
GROUP = "workers"


def check_name(kind: str, name: object) -> str:
    """Validate a job, queue, namespace or event name: `[A-Za-z0-9_.:-]{1,128}`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgumentError(f"invalid {kind} name {name!r}: use [A-Za-z0-9_.:-]{{1,128}}")
    return name


class Keys:
    """Key names of one namespace (see SHAPES for each key's type and meaning)."""

    def __init__(self, namespace: str, tag: str | None = None) -> None:
        self.namespace = check_name("namespace", namespace)
        self.tag = namespace if tag is None else tag  # a partition's tag (partitions.py)
        self.prefix = f"ss:{{{self.tag}}}:"

    def render(self, shape: str, *args: str) -> str:
        """The key of `shape` with its arguments."""
        return render(self.prefix, shape, args)

    # the namespace
    def meta(self) -> str:
        """HASH: the storage layout version (`layout`) and migration cursors (`mig:<step>`)."""
        return render(self.prefix, "meta", ())

    def migrating(self) -> str:
        """STRING: the token of the process migrating the layout (a lock with a TTL)."""
        return render(self.prefix, "migrating", ())

    # runs
    def run(self, run_id: str) -> str:
        """HASH: a run's fields, step results (`s:<name>`) and timeline (`t:<n>`)."""
        return render(self.prefix, "run", (run_id,))

    def idem(self, job: str, key: str) -> str:
        """STRING: idempotency key -> run id."""
        return render(self.prefix, "idem", (job, key))

    def idx_status(self, status: str) -> str:
        """ZSET: run ids with that status, scored by when they entered it (ms)."""
        return render(self.prefix, "idx_status", (status,))

    def idx_job_status(self, job: str, status: str) -> str:
        """ZSET: run ids of a job with that status."""
        return render(self.prefix, "idx_job_status", (job, status))

    def ord_status(self, status: str) -> str:
        """ZSET: run ids with that status, all scored 0: ordered by id = creation time."""
        return render(self.prefix, "ord_status", (status,))

    def ord_job_status(self, job: str, status: str) -> str:
        """ZSET: run ids of a job with that status, in id (creation) order."""
        return render(self.prefix, "ord_job_status", (job, status))

    def done(self) -> str:
        """STREAM: ids of finished runs that somebody awaits (capped)."""
        return render(self.prefix, "done", ())

    def control(self) -> str:
        """STREAM: cancel requests for running runs, read by every worker (capped)."""
        return render(self.prefix, "control", ())

    def seq(self) -> str:
        """STRING: the counter behind run ids made inside scripts (lib/lua_run_id.lua)."""
        return render(self.prefix, "seq", ())

    def jobs(self) -> str:
        """HASH: job name -> queue, published by workers."""
        return render(self.prefix, "jobs", ())

    def on_failure(self) -> str:
        """HASH: job name -> the job its failed runs start (on_failure), published by workers."""
        return render(self.prefix, "on_failure", ())

    def defs(self) -> str:
        """HASH: published job definitions and their revision (`_core/definitions.py`)."""
        return render(self.prefix, "defs", ())

    def job_versions(self, job: str) -> str:
        """ZSET: a job's versions -> expiry ms of the latest live worker registering it."""
        return render(self.prefix, "job_versions", (job,))

    def unserved(self, job: str, version: int | str) -> str:
        """ZSET: queued runs of a job version no live worker serves -> held since ms."""
        return render(self.prefix, "unserved", (job, str(version)))

    def owners(self) -> str:
        """ZSET: registry entries (j/job/queue, t/event/job/queue) -> expiry ms: dropped
        from the job map and triggers once no live worker registers them."""
        return render(self.prefix, "owners", ())

    def qlive(self) -> str:
        """ZSET: queue -> expiry ms of the latest heartbeat of a worker consuming it."""
        return render(self.prefix, "qlive", ())

    def leased_queues(self) -> str:
        """SET: the queues runs were ever leased from (running runs are in their leases)."""
        return render(self.prefix, "leased_queues", ())

    def take(self, taker: str) -> str:
        """STRING: a taker's last take id and the runs it leased (a re-sent take gets
        them again)."""
        return render(self.prefix, "take", (taker,))

    def output(self, run_id: str) -> str:
        """STREAM: a run's output messages (`ctx.publish`), capped; expires with the run."""
        return render(self.prefix, "output", (run_id,))

    def outbox(self) -> str:
        """STREAM: with partitions, what this partition's scripts must do on another one
        (start a child, settle a parent, cancel a child), applied by workers' relays."""
        return render(self.prefix, "outbox", ())

    def tx_commit(self, run_id: str) -> str:
        """HASH: with partitions, the record (s:<step>), commit token (tx:<step>) and
        timeline summary (j:<step>) of a run's transactional steps committed on this
        partition, not the run's."""
        return render(self.prefix, "tx_commit", (run_id,))

    def tx_start(self, run_id: str) -> str:
        """STRING: with partitions, the run id (or '') a transactional step's start of run
        `run_id`, routed here through the outbox, ended in: it is applied once."""
        return render(self.prefix, "tx_start", (run_id,))

    # queues
    def stream(self, queue: str) -> str:
        """STREAM: wake-up tickets for workers blocked on the queue (consumer group)."""
        return render(self.prefix, "stream", (queue,))

    def ready(self, queue: str, group: str) -> str:
        """ZSET: ready run ids of one group, scored by priority then arrival."""
        return render(self.prefix, "ready", (queue, group))

    def ring(self, queue: str) -> str:
        """ZSET: groups that have ready runs, scored by their turn (round robin)."""
        return render(self.prefix, "ring", (queue,))

    def queue_stat(self, queue: str) -> str:
        """HASH: queue counters kept by the scripts (seq, starved; ready, scheduled and
        waiting runs, read by metrics)."""
        return render(self.prefix, "queue_stat", (queue,))

    def minutes(self, queue: str) -> str:
        """HASH: runs completed ('<epoch minute>:c') and failed ('<minute>:f') per minute
        over the last hour (lua/lib/minute_counts.lua; the overview's chart)."""
        return render(self.prefix, "minutes", (queue,))

    def delayed(self, queue: str) -> str:
        """ZSET: run id -> due time (ms) for delayed runs, retries and timers."""
        return render(self.prefix, "delayed", (queue,))

    def leases(self, queue: str) -> str:
        """ZSET: run id -> lease expiry (ms) of claimed runs."""
        return render(self.prefix, "leases", (queue,))

    def queue_conf(self, queue: str) -> str:
        """HASH: queue settings shared by every process (concurrency, visibility)."""
        return render(self.prefix, "queue_conf", (queue,))

    def permits(self, queue: str) -> str:
        """ZSET: with partitions, permit id -> expiry ms of the queue's runs running now,
        against its global concurrency limit (lua/permits.lua; namespace tag)."""
        return render(self.prefix, "permits", (queue,))

    def workers(self) -> str:
        """ZSET: worker id -> heartbeat expiry (ms)."""
        return render(self.prefix, "workers", ())

    def worker_info(self) -> str:
        """HASH: worker id -> JSON {host, pid, queues, concurrency, running, at, started}."""
        return render(self.prefix, "worker_info", ())

    def clock(self) -> str:
        """STRING: the virtual time (ms) of a TestEnv, read by its scripts' `now_ms`."""
        return render(self.prefix, "clock", ())

    # flow control
    def slot(self, job: str, slot_id: str) -> str:
        """SET: ids of the runs holding a place of a Concurrency slot (`<entry>:<key>`)."""
        return render(self.prefix, "slot", (job, slot_id))

    def parked(self, job: str, slot_id: str) -> str:
        """ZSET: "queue group" entries blocked on a full slot, by when they parked (ms)."""
        return render(self.prefix, "parked", (job, slot_id))

    def throttle(self, job: str, key: str) -> str:
        """STRING: a throttle key's GCRA theoretical arrival time (ms)."""
        return render(self.prefix, "throttle", (job, key))

    def throttle_log(self, job: str, key: str) -> str:
        """ZSET: runs of a throttle key started within its period: run id -> start ms."""
        return render(self.prefix, "throttle_log", (job, key))

    def rate_limit(self, job: str, key: str) -> str:
        """ZSET: runs a rate-limited key created within its window: run id -> ms."""
        return render(self.prefix, "rate_limit", (job, key))

    def debounce(self, job: str, key: str) -> str:
        """STRING: the run id of a debounce key's open burst."""
        return render(self.prefix, "debounce", (job, key))

    def singleton(self, job: str, key: str) -> str:
        """STRING: the run id of a singleton key's latest run."""
        return render(self.prefix, "singleton", (job, key))

    # state
    def state(self, name: str) -> str:
        """STRING: a state value (serialized) or counter."""
        return render(self.prefix, "state", (name,))

    def lock(self, name: str) -> str:
        """STRING: lock token."""
        return render(self.prefix, "lock", (name,))

    # events
    def event_seen(self, event_id: str) -> str:
        """STRING: marks an event id as recorded (dedupe window)."""
        return render(self.prefix, "event_seen", (event_id,))

    def event_shapes(self, event: str) -> str:
        """HASH: match shape (paths) -> number of waiters with that shape."""
        return render(self.prefix, "event_shapes", (event,))

    def event_waiters(self, event: str, shape: str, values_key: str) -> str:
        """SET: run ids waiting for `event` whose match on paths `shape` has these values."""
        return render(self.prefix, "event_waiters", (event, shape, values_key))

    def event_log(self, event: str) -> str:
        """ZSET: recent event ids of that name by time (ms), for lookback."""
        return render(self.prefix, "event_log", (event,))

    def event_data(self, event: str) -> str:
        """HASH: recent event id -> recorded event, for lookback."""
        return render(self.prefix, "event_data", (event,))

    def event_names(self) -> str:
        """ZSET: event names by the time one was last sent (ms); the 1000 newest kept."""
        return render(self.prefix, "event_names", ())

    def triggers(self, event: str) -> str:
        """HASH: job -> queue of jobs started by that event."""
        return render(self.prefix, "triggers", (event,))

    # schedules
    def schedule(self, name: str) -> str:
        """HASH: a schedule's definition and state (next fire, last run)."""
        return render(self.prefix, "schedule", (name,))

    def schedules(self) -> str:
        """ZSET: schedule name -> next fire time ms (+inf while paused)."""
        return render(self.prefix, "schedules", ())


def layout1_markers(keys: Keys) -> list[str]:
    """Keys that a namespace of storage layout 1 (release 6707af1) with any data has (a run,
    a worker, a schedule), spelled as layout 1 named them: frozen, whatever later layouts
    rename (layout.py tells an old namespace from a new one by them)."""
    names = [*(f"idx:{s}" for s in STATUSES), *(f"ord:{s}" for s in STATUSES)]
    names += ["jobs", "workers", "scheds", "seq"]  # (layout 4 writes no idx:queued)
    return [keys.prefix + n for n in names]
