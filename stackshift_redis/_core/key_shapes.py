"""Key shapes: every key a namespace has (`SHAPES`: its parts, type and meaning), and
how arguments are written into a key and read back (keys.py builds the names).

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
    "tx_commit": ("txc", "{run_id}"),  # HASH with partitions: s:/tx:/j:<step> of remote commits
    "tx_start": ("txs", "{run_id}"),  # STRING with partitions: outcome of a tx.start applied
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


def render(prefix: str, shape: str, args: tuple[str, ...]) -> str:
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
