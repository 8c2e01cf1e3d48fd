"""Pure data: run statuses, RunInfo, Event, step records and durations (no I/O)."""

from __future__ import annotations

import json
import math
import os
import sysconfig
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from types import TracebackType
from typing import Any

import msgpack

from ..errors import InvalidArgumentError
from . import clock
from .partitions import id_suffix
from .serializer import Serializer

Duration = float | int | timedelta


class RunStatus(StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for completed, failed and cancelled."""
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


def seconds(value: Duration, what: str = "duration") -> float:
    """A duration in seconds from int/float seconds or a timedelta; rejects negatives."""
    if isinstance(value, timedelta):
        out = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        raise InvalidArgumentError(f"{what} must be seconds or a timedelta, not {value!r}")
    if not math.isfinite(out):
        raise InvalidArgumentError(f"{what} must be a finite number of seconds, not {value!r}")
    if out < 0:
        raise InvalidArgumentError(f"{what} must not be negative: {value!r}")
    return out


def check_run_id(run_id: object) -> str:
    """A run id argument: a non-empty str (InvalidArgumentError otherwise)."""
    if not isinstance(run_id, str) or not 0 < len(run_id) <= 256:
        raise InvalidArgumentError(f"run_id must be a non-empty str, not {run_id!r}")
    return run_id


def check_int(value: object, what: str, low: int, high: int | None = None) -> int:
    """An int argument within [low, high] (bools and strings are refused)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be an int, not {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise InvalidArgumentError(f"{what} must be {bounds}, not {value!r}")
    return value


def millis(value: Duration, what: str = "duration") -> int:
    """A duration in whole milliseconds."""
    return round(seconds(value, what) * 1000)


def epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch; naive datetimes are taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


def from_ms(value: Any) -> datetime | None:
    """An aware UTC datetime from epoch milliseconds (bytes, str or int), or None."""
    if value is None or value == b"" or value is False:
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


_id_lock = threading.Lock()
_id_last = [0, 0]


def new_run_id(partition: int | None = None) -> str:
    """A unique id sortable by creation time: 11 hex digits of ms, 5 of a per-process
    sequence (monotonic within a millisecond), 8 random; then `-<partition>` when the
    namespace has more than one (partitions.py)."""
    with _id_lock:
        ms = clock.now_ms()
        # a clock that went back by more than a second (a TestEnv's virtual clock restored
        # to real time) starts afresh instead of pinning every later id to that future ms
        if ms <= _id_last[0] and _id_last[0] - ms < 1000:
            ms, seq = _id_last[0], _id_last[1] + 1
            if seq > 0xFFFFF:
                ms, seq = ms + 1, 0
        else:
            seq = 0
        _id_last[:] = [ms, seq]
    return f"{ms:011x}{seq:05x}{os.urandom(4).hex()}{id_suffix(partition)}"


_LIBRARY = (
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # stackshift_redis/
    sysconfig.get_paths()["stdlib"] + os.sep,  # asyncio, concurrent.futures (threads)
)


def user_traceback(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from its first frame outside this library and the standard library
    (the user's handler), or all of it when every frame is ours."""
    t = tb
    while t is not None and t.tb_frame.f_code.co_filename.startswith(_LIBRARY):
        t = t.tb_next
    return t or tb


def error_json(exc: BaseException, *, type_name: str | None = None) -> str:
    """The error record of a failed attempt: type, message, traceback (from user code)."""
    tb = "".join(traceback.format_exception(type(exc), exc, user_traceback(exc.__traceback__)))
    return json.dumps(
        {"type": type_name or type(exc).__name__, "message": str(exc), "traceback": tb[-8000:]}
    )


# Step records are msgpack maps {"status", "at", "result" | "error"}; the value comes
# last so Lua can finish a record by appending a msgpack bin/str (lua/lib/mp_pack.lua).
def record_prefix(status: str, last_key: str) -> bytes:
    """A record up to (not including) its last value."""
    head: bytes = msgpack.packb({"status": status, "at": clock.now_ms()})
    key: bytes = msgpack.packb(last_key)
    return bytes([head[0] + 1]) + head[1:] + key


def step_completed(value: bytes) -> bytes:
    """A completed step's record holding serialized `value`."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return record_prefix("completed", "result") + packed


def step_failed(error: dict[str, Any] | str) -> bytes:
    """A failed step's record."""
    packed: bytes = msgpack.packb(error)
    return record_prefix("failed", "error") + packed


def read_step(record: bytes, serializer: Serializer) -> dict[str, Any]:
    """A step record as {"status", "at", "result" | "error"} with the result deserialized."""
    raw: dict[str, Any] = msgpack.unpackb(record, raw=False)
    out: dict[str, Any] = {"status": raw["status"], "at": from_ms(raw.get("at"))}
    if "result" in raw:
        out["result"] = serializer.loads(raw["result"])
    if "error" in raw:
        out["error"] = raw["error"]
    return out


@dataclass(frozen=True)
class Event:
    """An event: name, id, data and when it was sent."""

    name: str
    """The event's name."""
    id: str
    """Its id (dedupes repeated sends)."""
    data: Any
    """Its data (any serializable value)."""
    ts: datetime
    """When it was sent (aware UTC)."""


@dataclass(frozen=True)
class SendEventResult:
    """What `send_event` did: runs it resumed and runs it started."""

    id: str
    """The event's id."""
    resumed: list[str] = field(default_factory=list)
    """Ids of the waiting runs it resumed."""
    started: list[str] = field(default_factory=list)
    """Ids of the runs it started (on_event jobs)."""
    duplicate: bool = False
    """True when this id was sent before (within the dedupe window): nothing was done."""
    cancelled: list[str] = field(default_factory=list)
    """Ids of the runs it cancelled (their jobs' CancelOn rules matched it)."""


@dataclass(frozen=True)
class RunInfo:
    """A snapshot of a run as stored in Redis."""

    id: str
    """The run's id (sortable by creation time)."""
    status: RunStatus
    """Where the run is: queued, scheduled, running, waiting, completed, failed, cancelled."""
    job: str
    """The job's name."""
    queue: str
    """The queue it executes on."""
    payload: Any
    """The payload it was started with."""
    result: Any
    """The return value once completed, else None."""
    error: dict[str, Any] | None
    """Once failed or cancelled: {type, message, traceback}."""
    attempts: int
    """The attempt number, as `ctx.attempt`: failed attempts + 1 (0 before the first)."""
    created_at: datetime | None
    """When it was started."""
    started_at: datetime | None
    """When a worker first took it."""
    finished_at: datetime | None
    """When it finished."""
    steps: dict[str, dict[str, Any]]
    """Stored steps: {name: {status, result or error, at}}; a transactional step also has
    `tx`, what its commit applied: {set, deleted: [state names], events: [[name, id]],
    started: [run ids]} (each present when not empty)."""
    timeline: list[dict[str, Any]]
    """What happened, in order: [{at, type, ...}] (queued, started, step_completed, ...)."""
    parent_id: str | None = None
    """For a child run (invoke): the parent run's id."""
    progress: Any = None
    """The last value passed to ctx.progress()."""
    replay_of: str | None = None
    """The run this one replays (`replay`), else None."""
    executions: int = 0
    """How many times a worker took the run: attempts plus resumes after waits."""
    damaged: str | None = None
    """None, or which fields of the stored record do not decode and why. `list_runs` (and
    the CLI and dashboard pages of runs) list such a run with the fields that did decode;
    `get_run` raises RunDataError for it."""
    version: int = 1
    """The job version the run is pinned to (absent in older runs: 1)."""
    unserved: bool = False
    """True while the run waits queued because no live worker registers its version."""


class RunPage(list[RunInfo]):
    """A page of `list_runs`: a list of RunInfo, newest first, and the cursor of the next
    page in `cursor` (None on the last page)."""

    def __init__(self, runs: list[RunInfo], cursor: str | None = None) -> None:
        super().__init__(runs)
        self.cursor = cursor


def _s(v: bytes | None) -> str:
    return v.decode() if v is not None else ""


def _in_order(
    steps: dict[str, dict[str, Any]], timeline: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Steps in execution order: by the time of their first timeline entry, else of their
    record (a replay's copied records, older than the new run, come first)."""
    first: dict[str, tuple[float, int]] = {}
    for i, e in enumerate(timeline):
        name = e.get("step")
        if isinstance(name, str) and name not in first:
            at = e.get("at")
            first[name] = (at.timestamp() if isinstance(at, datetime) else 0.0, i)

    def key(name: str) -> tuple[float, int]:
        if name in first:
            return first[name]
        at = steps[name].get("at")
        return (at.timestamp() if isinstance(at, datetime) else 0.0), -1

    return {name: steps[name] for name in sorted(steps, key=key)}


class _Fields:
    """Reads a run hash field by field; what does not decode is noted, not raised."""

    def __init__(self, h: dict[bytes, bytes], serializer: Serializer) -> None:
        self.h = h
        self.serializer = serializer
        self.problems: list[str] = []

    def read(self, name: str, decode: Callable[[], Any], default: Any = None) -> Any:
        try:
            return decode()
        except Exception as exc:
            self.problems.append(f"field {name!r} does not deserialize ({exc!r})")
            return default

    def load(self, field: bytes) -> Any:
        """A serialized field (payload, result, progress), None when absent."""
        if field not in self.h:
            return None
        return self.read(field.decode(), lambda: self.serializer.loads(self.h[field]))


def parse_run(
    run_id: str, h: dict[bytes, bytes], serializer: Serializer, *, status: str | None = None
) -> RunInfo:
    """A RunInfo from the run hash (HGETALL). A field that does not decode raises
    ValueError naming it; with `status` (the status index the run was listed from) it is
    left empty instead and the RunInfo says what is `damaged`: one bad record does not
    fail a page of `list_runs`."""
    f = _Fields(h, serializer)
    steps: dict[str, dict[str, Any]] = {}
    entries: list[tuple[int, dict[str, Any]]] = []
    for k, v in h.items():
        if k.startswith(b"s:"):
            rec = f.read(k.decode(), partial(read_step, v, serializer))
            if rec is not None:
                steps[k[2:].decode()] = rec
        elif k.startswith(b"t:"):
            e = f.read(k.decode(), partial(_entry, k, v))
            if e is not None:
                entries.append(e)
    if b"t:1" not in h and b"created" in h and b"tl_len" in h:  # implied: queued at created
        entries.append(
            (1, {"type": "queued", "at": f.read("created", lambda: from_ms(h[b"created"]))})
        )
    timeline = [e for _, e in sorted(entries, key=lambda p: p[0])]
    for e in timeline:  # a transactional step: what its commit applied
        if "tx" in e and e.get("step") in steps:
            steps[e["step"]]["tx"] = e["tx"]
    state = f.read("status", lambda: RunStatus(_s(h.get(b"status"))))
    if f.problems and status is None:
        raise ValueError(f.problems[0])
    info = RunInfo(
        id=run_id,
        status=state if state is not None else RunStatus(str(status)),
        job=f.read("job", lambda: _s(h.get(b"job")), ""),
        queue=f.read("queue", lambda: _s(h.get(b"queue")), ""),
        payload=f.load(b"payload"),
        result=f.load(b"result"),
        error=f.read("error", lambda: json.loads(h[b"error"]) if b"error" in h else None),
        attempts=f.read("fails", lambda: _attempts(h), 0),
        executions=f.read("attempts", lambda: int(h.get(b"attempts", 0)), 0),
        created_at=f.read("created", lambda: from_ms(h.get(b"created"))),
        started_at=f.read("started", lambda: from_ms(h.get(b"started"))),
        finished_at=f.read("finished", lambda: from_ms(h.get(b"finished"))),
        steps=_in_order(steps, timeline),
        timeline=timeline,
        parent_id=f.read("parent", lambda: _s(h[b"parent"]) if b"parent" in h else None),
        progress=f.load(b"progress"),
        replay_of=f.read("replay_of", lambda: _s(h[b"replay_of"]) if b"replay_of" in h else None),
        damaged="; ".join(f.problems) or None,
        version=f.read("ver", lambda: int(h.get(b"ver", 1)), 1),
        unserved=b"unsv" in h,
    )
    if f.problems and status is None:
        raise ValueError(f.problems[0])
    return info


def _entry(k: bytes, v: bytes) -> tuple[int, dict[str, Any]]:
    e = json.loads(v)
    e["at"] = from_ms(e["at"])
    return int(k[2:]), e


def _attempts(h: dict[bytes, bytes]) -> int:
    return int(h.get(b"fails", 0)) + 1 if int(h.get(b"attempts", 0)) else 0
