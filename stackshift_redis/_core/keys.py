"""The only place Redis key names are built, for Python and for Lua.

Every key of a namespace carries the hash tag `{namespace}`, so every script is atomic
over the whole namespace and runs unchanged on Redis Cluster. A key is `ss:{ns}:` plus
the parts of its shape in `SHAPES` joined by `:`. `Keys` renders them in Python;
`luasrc.lua_keys()` renders the same shapes as the Lua table `K` that scripts include with
`-- @include keys.lua`, so a script that must find a key at run time (a run id read from a
sorted set) spells no key name itself.

Parts read back unambiguously whatever characters they hold: every argument but the last
part of a key is escaped (`escape`: `%` -> `%25`, `:` -> `%3A`), so it is one `:`-free
segment and the last part takes the rest. Names (jobs, queues, events) may contain `:`;
`idem:a:b:c` was both job `a` with key `b:c` and job `a:b` with key `c` before (issue 23).
A name without `:` and `%` renders as it always did. An argument followed only by a
status (a closed word: `STATUSES`) stays as is too: the per-job status indexes did not
change. `parse()` reads a key back into its shape and arguments.
"""

from __future__ import annotations

import re

from ..errors import InvalidArgumentError

NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
GROUP = "workers"
STATUSES = ("queued", "scheduled", "running", "waiting", "completed", "failed", "cancelled")
UNTIMED = ("queued", "running")  # statuses with no time index (idx, idxj): lib/move_index.lua

# name -> parts; a part in braces is an argument. One line per key: its type and meaning.
SHAPES: dict[str, tuple[str, ...]] = {
    # the namespace
    "meta": ("meta",),  # HASH layout: storage layout version; mig:<step>: migration cursor
    "migrating": ("migrating",),  # STRING token of the process migrating the layout (lock)
    # runs
    "run": ("run", "{run_id}"),  # HASH a run: fields in lua/README.md
    "idem": ("idem", "{job}", "{key}"),  # STRING idempotency key -> run id
    "idx_status": ("idx", "{status}"),  # ZSET run ids by status entry ms (not UNTIMED ones)
    "idx_job_status": ("idxj", "{job}", "{status}"),  # ZSET the same, per job
    "ord_status": ("ord", "{status}"),  # ZSET run ids with that status, score 0: id order
    "ord_job_status": ("ordj", "{job}", "{status}"),  # ZSET the same, per job (paging by cursor)
    "done": ("done",),  # STREAM ids of finished runs somebody awaits (capped)
    "control": ("ctl",),  # STREAM cancel requests for running runs (capped)
    "seq": ("seq",),  # STRING counter for run ids made inside scripts
    "jobs": ("jobs",),  # HASH job -> queue, published by workers
    "on_failure": ("onfail",),  # HASH job -> its on_failure handler job, published by workers
    "defs": ("defs",),  # HASH job -> definition JSON; #rev; q:/p:/v:<job> (definitions.py)
    "job_versions": ("jver", "{job}"),  # ZSET version -> expiry ms of its latest live worker
    "unserved": ("unsv", "{job}", "{version}"),  # ZSET queued run ids no live worker serves
    "owners": ("owners",),  # ZSET registry entry (job map, trigger) -> expiry ms
    "qlive": ("qlive",),  # ZSET queue -> expiry ms of its latest consumer's heartbeat
    "leased_queues": ("lq",),  # SET queues runs were ever leased from (running runs: leases)
    "take": ("take", "{taker}"),  # STRING a taker's last take id | its runs (JSON, 60 s)
    "output": ("out", "{run_id}"),  # STREAM a run's output messages (capped; expires with it)
    "outbox": ("outbox",),  # STREAM with partitions: effects on other partitions (relay.py)
    "tx_commit": ("txc", "{run_id}"),  # HASH with partitions: s:/tx:<step> of remote commits
    # queues
    "stream": ("q", "{queue}", "stream"),  # STREAM wake-up tickets; consumer group `workers`
    "ready": ("q", "{queue}", "ready", "{group}"),  # ZSET ready run ids of a group, by order
    "ring": ("q", "{queue}", "ring"),  # ZSET groups with ready runs, by turn (round robin)
    "queue_stat": ("q", "{queue}", "stat"),  # HASH counters: seq, starved, ready, scheduled, ...
    "delayed": ("q", "{queue}", "delayed"),  # ZSET run id -> due ms (delays, retries, timers)
    "leases": ("q", "{queue}", "leases"),  # ZSET run id -> lease expiry ms of claimed runs
    "queue_conf": ("q", "{queue}", "conf"),  # HASH queue settings shared by every process
    "permits": ("q", "{queue}", "permits"),  # ZSET partitions: the queue's concurrency permits
    "minutes": ("q", "{queue}", "min"),  # HASH '<minute>:c|f' -> runs completed|failed (1 h)
    "workers": ("workers",),  # ZSET worker id -> heartbeat expiry ms
    "worker_info": ("winfo",),  # HASH worker id -> JSON {host, pid, queues, concurrency, ...}
    "clock": ("clock",),  # STRING TestEnv only: virtual time ms (lua/testing/now_ms.lua)
    # flow control (keys.py `key` = a Concurrency slot id or a rule's key value, see flow.py)
    "slot": ("fc", "{job}", "slot", "{key}"),  # SET run ids holding one of that slot's places
    "parked": ("fc", "{job}", "park", "{key}"),  # ZSET "queue group" blocked on it -> park ms
    "throttle": ("fc", "{job}", "thr", "{key}"),  # STRING GCRA theoretical arrival time ms
    "throttle_log": ("fc", "{job}", "thrlog", "{key}"),  # ZSET run id -> start ms (window)
    "rate_limit": ("fc", "{job}", "rate", "{key}"),  # ZSET run id -> created ms, in the window
    "debounce": ("fc", "{job}", "deb", "{key}"),  # STRING run id of the key's open burst
    "singleton": ("fc", "{job}", "one", "{key}"),  # STRING run id of the key's latest run
    # state
    "state": ("st", "{name}"),  # STRING a state value (serialized) or counter (decimal)
    "lock": ("lock", "{name}"),  # STRING a lock's token
    # events
    "event_seen": ("evid", "{event_id}"),  # STRING marks an event id as recorded
    "event_shapes": ("ev", "{event}", "shapes"),  # HASH match shape -> number of waiters
    "event_waiters": ("ev", "{event}", "w", "{shape}", "{values}"),  # SET waiting run ids
    "event_log": ("ev", "{event}", "log"),  # ZSET recent event ids by time ms (lookback)
    "event_data": ("ev", "{event}", "data"),  # HASH recent event id -> event; id:m -> flat
    "event_names": ("evn",),  # ZSET event names by last sent ms (1000 newest kept)
    "triggers": ("trig", "{event}"),  # HASH job -> queue of jobs that event starts
    # schedules
    "schedule": ("sched", "{name}"),  # HASH a schedule: definition and state (lua/README.md)
    "schedules": ("scheds",),  # ZSET schedule name -> next fire ms (+inf while paused)
}


def check_name(kind: str, name: object) -> str:
    """Validate a job, queue, namespace or event name: `[A-Za-z0-9_.:-]{1,128}`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgumentError(f"invalid {kind} name {name!r}: use [A-Za-z0-9_.:-]{{1,128}}")
    return name


def escape(part: str) -> str:
    """A key part as one `:`-free segment: `%` -> `%25`, `:` -> `%3A` (else unchanged)."""
    if "%" in part or ":" in part:
        return part.replace("%", "%25").replace(":", "%3A")
    return part


def unescape(segment: str) -> str:
    """The part an escaped segment stands for (the inverse of `escape`)."""
    return re.sub("%(25|3A)", lambda m: "%" if m.group(1) == "25" else ":", segment)


def _raw(parts: tuple[str, ...], i: int) -> bool:
    """Whether argument `i` is written as is: the last part, or one followed only by a
    status (a closed word without `:`)."""
    return all(p == "{status}" for p in parts[i + 1 :])


# per shape: (literal text, or None for an argument; whether the argument is escaped)
PLANS: dict[str, tuple[tuple[str | None, bool], ...]] = {
    name: tuple(
        (None, not _raw(parts, i)) if p.startswith("{") else (p, False) for i, p in enumerate(parts)
    )
    for name, parts in SHAPES.items()
}


def _render(prefix: str, shape: str, args: tuple[str, ...]) -> str:
    values = iter(args)
    out: list[str] = []
    for literal, escaped in PLANS[shape]:
        if literal is not None:
            out.append(literal)
        else:
            value = next(values)
            out.append(escape(value) if escaped else value)
    return prefix + ":".join(out)


def parse(prefix: str, key: str) -> tuple[str, tuple[str, ...]] | None:
    """(shape, arguments) of a key of the namespace with `prefix`, or None for a key of
    no shape. Each key has exactly one reading (tests/test_keys.py checks it)."""
    if not key.startswith(prefix):
        return None
    segments = key[len(prefix) :].split(":")
    found = [(shape, args) for shape in SHAPES if (args := _match(shape, segments)) is not None]
    return found[0] if len(found) == 1 else None


def scan_pattern(prefix: str, first: str = "") -> str:
    """A SCAN MATCH pattern for the keys of the namespace with `prefix` whose shape's first
    literal begins with a character of `first` (every key when empty)."""
    return prefix + (f"[{first}]*" if first else "*")


def _match(shape: str, segments: list[str]) -> tuple[str, ...] | None:
    plan = PLANS[shape]
    wide = next((i for i, (lit, esc) in enumerate(plan) if lit is None and not esc), None)
    if (wide is None and len(segments) != len(plan)) or len(segments) < len(plan):
        return None
    spare = len(segments) - len(plan)  # the segments the raw argument takes beyond one
    args: list[str] = []
    at = 0
    for i, (literal, escaped) in enumerate(plan):
        width = 1 + spare if i == wide else 1
        text = ":".join(segments[at : at + width])
        at += width
        if literal is not None:
            if text != literal:
                return None
        elif SHAPES[shape][i] == "{status}" and text not in STATUSES:
            return None
        else:
            args.append(unescape(text) if escaped else text)
    return tuple(args)


class Keys:
    """Key names of one namespace (see SHAPES for each key's type and meaning)."""

    def __init__(self, namespace: str, tag: str | None = None) -> None:
        self.namespace = check_name("namespace", namespace)
        self.tag = namespace if tag is None else tag  # a partition's tag (partitions.py)
        self.prefix = f"ss:{{{self.tag}}}:"

    def render(self, shape: str, *args: str) -> str:
        """The key of `shape` with its arguments."""
        return _render(self.prefix, shape, args)

    # the namespace
    def meta(self) -> str:
        """HASH: the storage layout version (`layout`) and migration cursors (`mig:<step>`)."""
        return _render(self.prefix, "meta", ())

    def migrating(self) -> str:
        """STRING: the token of the process migrating the layout (a lock with a TTL)."""
        return _render(self.prefix, "migrating", ())

    # runs
    def run(self, run_id: str) -> str:
        """HASH: a run's fields, step results (`s:<name>`) and timeline (`t:<n>`)."""
        return _render(self.prefix, "run", (run_id,))

    def idem(self, job: str, key: str) -> str:
        """STRING: idempotency key -> run id."""
        return _render(self.prefix, "idem", (job, key))

    def idx_status(self, status: str) -> str:
        """ZSET: run ids with that status, scored by when they entered it (ms)."""
        return _render(self.prefix, "idx_status", (status,))

    def idx_job_status(self, job: str, status: str) -> str:
        """ZSET: run ids of a job with that status."""
        return _render(self.prefix, "idx_job_status", (job, status))

    def ord_status(self, status: str) -> str:
        """ZSET: run ids with that status, all scored 0: ordered by id = creation time."""
        return _render(self.prefix, "ord_status", (status,))

    def ord_job_status(self, job: str, status: str) -> str:
        """ZSET: run ids of a job with that status, in id (creation) order."""
        return _render(self.prefix, "ord_job_status", (job, status))

    def done(self) -> str:
        """STREAM: ids of finished runs that somebody awaits (capped)."""
        return _render(self.prefix, "done", ())

    def control(self) -> str:
        """STREAM: cancel requests for running runs, read by every worker (capped)."""
        return _render(self.prefix, "control", ())

    def seq(self) -> str:
        """STRING: the counter behind run ids made inside scripts (lib/lua_run_id.lua)."""
        return _render(self.prefix, "seq", ())

    def jobs(self) -> str:
        """HASH: job name -> queue, published by workers."""
        return _render(self.prefix, "jobs", ())

    def on_failure(self) -> str:
        """HASH: job name -> the job its failed runs start (on_failure), published by workers."""
        return _render(self.prefix, "on_failure", ())

    def defs(self) -> str:
        """HASH: published job definitions and their revision (`_core/definitions.py`)."""
        return _render(self.prefix, "defs", ())

    def job_versions(self, job: str) -> str:
        """ZSET: a job's versions -> expiry ms of the latest live worker registering it."""
        return _render(self.prefix, "job_versions", (job,))

    def unserved(self, job: str, version: int | str) -> str:
        """ZSET: queued runs of a job version no live worker serves -> held since ms."""
        return _render(self.prefix, "unserved", (job, str(version)))

    def owners(self) -> str:
        """ZSET: registry entries (j/job/queue, t/event/job/queue) -> expiry ms: dropped
        from the job map and triggers once no live worker registers them."""
        return _render(self.prefix, "owners", ())

    def qlive(self) -> str:
        """ZSET: queue -> expiry ms of the latest heartbeat of a worker consuming it."""
        return _render(self.prefix, "qlive", ())

    def leased_queues(self) -> str:
        """SET: the queues runs were ever leased from (running runs are in their leases)."""
        return _render(self.prefix, "leased_queues", ())

    def take(self, taker: str) -> str:
        """STRING: a taker's last take id and the runs it leased (a re-sent take gets
        them again)."""
        return _render(self.prefix, "take", (taker,))

    def output(self, run_id: str) -> str:
        """STREAM: a run's output messages (`ctx.publish`), capped; expires with the run."""
        return _render(self.prefix, "output", (run_id,))

    def outbox(self) -> str:
        """STREAM: with partitions, what this partition's scripts must do on another one
        (start a child, settle a parent, cancel a child), applied by workers' relays."""
        return _render(self.prefix, "outbox", ())

    def tx_commit(self, run_id: str) -> str:
        """HASH: with partitions, the record (s:<step>) and commit token (tx:<step>) of a
        run's transactional steps committed on this partition, not the run's."""
        return _render(self.prefix, "tx_commit", (run_id,))

    # queues
    def stream(self, queue: str) -> str:
        """STREAM: wake-up tickets for workers blocked on the queue (consumer group)."""
        return _render(self.prefix, "stream", (queue,))

    def ready(self, queue: str, group: str) -> str:
        """ZSET: ready run ids of one group, scored by priority then arrival."""
        return _render(self.prefix, "ready", (queue, group))

    def ring(self, queue: str) -> str:
        """ZSET: groups that have ready runs, scored by their turn (round robin)."""
        return _render(self.prefix, "ring", (queue,))

    def queue_stat(self, queue: str) -> str:
        """HASH: queue counters kept by the scripts (seq, starved; ready, scheduled and
        waiting runs, read by metrics)."""
        return _render(self.prefix, "queue_stat", (queue,))

    def minutes(self, queue: str) -> str:
        """HASH: runs completed ('<epoch minute>:c') and failed ('<minute>:f') per minute
        over the last hour (lua/lib/minute_counts.lua; the overview's chart)."""
        return _render(self.prefix, "minutes", (queue,))

    def delayed(self, queue: str) -> str:
        """ZSET: run id -> due time (ms) for delayed runs, retries and timers."""
        return _render(self.prefix, "delayed", (queue,))

    def leases(self, queue: str) -> str:
        """ZSET: run id -> lease expiry (ms) of claimed runs."""
        return _render(self.prefix, "leases", (queue,))

    def queue_conf(self, queue: str) -> str:
        """HASH: queue settings shared by every process (concurrency, visibility)."""
        return _render(self.prefix, "queue_conf", (queue,))

    def permits(self, queue: str) -> str:
        """ZSET: with partitions, permit id -> expiry ms of the queue's runs running now,
        against its global concurrency limit (lua/permits.lua; namespace tag)."""
        return _render(self.prefix, "permits", (queue,))

    def workers(self) -> str:
        """ZSET: worker id -> heartbeat expiry (ms)."""
        return _render(self.prefix, "workers", ())

    def worker_info(self) -> str:
        """HASH: worker id -> JSON {host, pid, queues, concurrency, running, at, started}."""
        return _render(self.prefix, "worker_info", ())

    def clock(self) -> str:
        """STRING: the virtual time (ms) of a TestEnv, read by its scripts' `now_ms`."""
        return _render(self.prefix, "clock", ())

    # flow control
    def slot(self, job: str, slot_id: str) -> str:
        """SET: ids of the runs holding a place of a Concurrency slot (`<entry>:<key>`)."""
        return _render(self.prefix, "slot", (job, slot_id))

    def parked(self, job: str, slot_id: str) -> str:
        """ZSET: "queue group" entries blocked on a full slot, by when they parked (ms)."""
        return _render(self.prefix, "parked", (job, slot_id))

    def throttle(self, job: str, key: str) -> str:
        """STRING: a throttle key's GCRA theoretical arrival time (ms)."""
        return _render(self.prefix, "throttle", (job, key))

    def throttle_log(self, job: str, key: str) -> str:
        """ZSET: runs of a throttle key started within its period: run id -> start ms."""
        return _render(self.prefix, "throttle_log", (job, key))

    def rate_limit(self, job: str, key: str) -> str:
        """ZSET: runs a rate-limited key created within its window: run id -> ms."""
        return _render(self.prefix, "rate_limit", (job, key))

    def debounce(self, job: str, key: str) -> str:
        """STRING: the run id of a debounce key's open burst."""
        return _render(self.prefix, "debounce", (job, key))

    def singleton(self, job: str, key: str) -> str:
        """STRING: the run id of a singleton key's latest run."""
        return _render(self.prefix, "singleton", (job, key))

    # state
    def state(self, name: str) -> str:
        """STRING: a state value (serialized) or counter."""
        return _render(self.prefix, "state", (name,))

    def lock(self, name: str) -> str:
        """STRING: lock token."""
        return _render(self.prefix, "lock", (name,))

    # events
    def event_seen(self, event_id: str) -> str:
        """STRING: marks an event id as recorded (dedupe window)."""
        return _render(self.prefix, "event_seen", (event_id,))

    def event_shapes(self, event: str) -> str:
        """HASH: match shape (paths) -> number of waiters with that shape."""
        return _render(self.prefix, "event_shapes", (event,))

    def event_waiters(self, event: str, shape: str, values_key: str) -> str:
        """SET: run ids waiting for `event` whose match on paths `shape` has these values."""
        return _render(self.prefix, "event_waiters", (event, shape, values_key))

    def event_log(self, event: str) -> str:
        """ZSET: recent event ids of that name by time (ms), for lookback."""
        return _render(self.prefix, "event_log", (event,))

    def event_data(self, event: str) -> str:
        """HASH: recent event id -> recorded event, for lookback."""
        return _render(self.prefix, "event_data", (event,))

    def event_names(self) -> str:
        """ZSET: event names by the time one was last sent (ms); the 1000 newest kept."""
        return _render(self.prefix, "event_names", ())

    def triggers(self, event: str) -> str:
        """HASH: job -> queue of jobs started by that event."""
        return _render(self.prefix, "triggers", (event,))

    # schedules
    def schedule(self, name: str) -> str:
        """HASH: a schedule's definition and state (next fire, last run)."""
        return _render(self.prefix, "schedule", (name,))

    def schedules(self) -> str:
        """ZSET: schedule name -> next fire time ms (+inf while paused)."""
        return _render(self.prefix, "schedules", ())


def layout1_markers(keys: Keys) -> list[str]:
    """Keys that a namespace of storage layout 1 (release 6707af1) with any data has (a run,
    a worker, a schedule), spelled as layout 1 named them: frozen, whatever later layouts
    rename (layout.py tells an old namespace from a new one by them)."""
    names = [*(f"idx:{s}" for s in STATUSES), *(f"ord:{s}" for s in STATUSES)]
    names += ["jobs", "workers", "scheds", "seq"]  # (layout 4 writes no idx:queued)
    return [keys.prefix + n for n in names]
