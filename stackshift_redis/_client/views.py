"""Read-side views for operators: one run in full (steps with results and durations, what a
waiting run waits for and until when, links to other runs) and the step waterfall. The
CLI's `runs show` and the dashboard's run page both draw a `RunView`.

Cost of `run_view`: one HGETALL of the run hash (the same read as `get_run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from .._core.fanout import pipelined, sum_rows
from .._core.keys import Keys
from .._core.namespace import Namespace
from .._core.records import RunInfo, check_run_id, from_ms
from .reads import _parse

LONG = 400  # characters of a step's result or error shown before it is collapsed


@dataclass(frozen=True)
class StepView:
    """One step: its outcome, its result (pretty JSON) or error, and how long it took."""

    name: str
    status: str  # completed | failed | copied (a replay's copied record) | ...
    text: str  # the result as pretty JSON, or "Type: message" for an error
    long: bool  # more than LONG characters: collapse it
    duration: float | None  # seconds, from the timeline (None when not in it)
    at: datetime | None
    error: bool = False


@dataclass(frozen=True)
class WaitView:
    """One pending wait of a waiting run: kind (event, sleep, child), the event name and
    the data paths it matches, the child run, and when it ends (sleep end or timeout)."""

    step: str
    kind: str
    event: str | None
    match_on: list[str]
    child: str | None
    due: datetime | None  # a sleep's end, or an event/child wait's timeout


@dataclass(frozen=True)
class RunView:
    """A run with its steps, its pending waits and its links to other runs."""

    info: RunInfo
    steps: list[StepView]
    waits: list[WaitView]
    children: list[str]
    failure_handlers: list[str] = field(default_factory=list)  # on_failure runs it started
    failure_of: str | None = None  # the run this failure handler run is for
    replays: list[str] = field(default_factory=list)  # runs replaying this one


def pretty(value: Any) -> str:
    """A value as indented JSON (any value: what JSON cannot hold is shown as repr)."""
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


def waterfall(info: RunInfo) -> list[dict[str, Any]]:
    """Bars for a step waterfall from the timeline: each step from the entry before its
    outcome (the attempt's start or the previous step) to its outcome; each wait from its
    `waiting` entry to the next entry. Offsets are seconds from the run's creation."""
    origin = info.created_at or (info.timeline[0]["at"] if info.timeline else None)
    if origin is None:
        return []
    bars: list[dict[str, Any]] = []
    prev = origin
    tl = info.timeline
    for n, e in enumerate(tl):
        at = e.get("at") or prev
        kind = e.get("type", "")
        if kind in ("step_completed", "step_failed") and e.get("step"):
            bars.append(_bar(e["step"], kind.split("_")[1], prev, at, origin))
        elif kind == "waiting" and e.get("step"):
            end = tl[n + 1]["at"] if n + 1 < len(tl) else None
            steps, kinds = e.get("steps") or [e["step"]], e.get("kinds") or [e.get("kind", "")]
            for step, what in zip(steps, kinds, strict=False):  # a gather: one bar per wait
                bars.append(_bar(step, f"waiting ({what})", at, end, origin))
        prev = at
    return bars


def _bar(
    name: str, state: str, start: datetime, end: datetime | None, origin: datetime
) -> dict[str, Any]:
    s = (start - origin).total_seconds()
    d = (end - start).total_seconds() if end is not None else None
    return {"step": name, "state": state, "start": s, "duration": d, "open": end is None}


def steps_of(info: RunInfo) -> list[StepView]:
    """Every stored step in execution order (a replay's copied steps first), with its
    result or error and its duration from the timeline."""
    took: dict[str, float] = {}
    for b in waterfall(info):
        if b["duration"] is not None:
            took[b["step"]] = took.get(b["step"], 0.0) + b["duration"]
    named = {e.get("step") for e in info.timeline if e.get("type") != "step_copied"}
    copied = {e.get("step") for e in info.timeline if e.get("type") == "step_copied"}
    out = []
    for name, rec in info.steps.items():
        status = str(rec.get("status", ""))
        if "error" in rec:
            err = rec["error"]
            text = (
                f"{err.get('type', 'Error')}: {err.get('message', '')}"
                if isinstance(err, dict)
                else str(err)
            )
        else:
            text = pretty(rec.get("result"))
        if name in copied or (info.replay_of and name not in named):
            status = "copied"
        out.append(
            StepView(
                name=name,
                status=status,
                text=text,
                long=len(text) > LONG or text.count("\n") > 12,
                duration=took.get(name),
                at=rec.get("at"),
                error="error" in rec,
            )
        )
    return out


def waits_of(h: dict[bytes, bytes]) -> list[WaitView]:
    """The pending waits in a run hash (its `w:<step>` fields)."""
    out = []
    for k, v in sorted(h.items()):
        if not k.startswith(b"w:"):
            continue
        try:
            w = json.loads(v)
        except ValueError:
            continue
        due = int(w.get("d") or 0)
        out.append(
            WaitView(
                step=k[2:].decode(),
                kind=str(w.get("k", "")),
                event=w.get("e"),
                match_on=[p for p in str(w.get("s") or "").split(",") if p],
                child=w.get("c"),
                due=from_ms(due) if due > 0 else None,
            )
        )
    return out


async def run_view(ns: Namespace, run_id: str) -> RunView | None:
    """A run in full, or None when unknown or expired (one HGETALL)."""
    h = await ns.redis.hgetall(ns.keys_of(check_run_id(run_id)).run(run_id))
    if not h:
        return None
    info = _parse(run_id, h, ns)
    tl = info.timeline
    kids = [e.get("child") for e in tl if e.get("type") == "child_started"]
    handlers = [e.get("on_failure_run") for e in tl if e.get("type") == "failed"]
    replays = [e.get("run") for e in tl if e.get("type") == "replayed"]
    failure_of = h.get(b"failure_of")
    return RunView(
        info=info,
        steps=steps_of(info),
        waits=waits_of(h) if info.status.value == "waiting" else [],
        children=list(dict.fromkeys(c for c in kids if isinstance(c, str))),
        failure_handlers=[x for x in handlers if isinstance(x, str)],
        failure_of=failure_of.decode() if failure_of else None,
        replays=[x for x in replays if isinstance(x, str)],
    )


TIME_FIELDS = ("until", "due")  # timeline entry fields holding epoch ms


def entry_details(entry: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry's fields but `at` and `type`, epoch-ms times as UTC dates."""
    out: dict[str, Any] = {}
    for k, v in entry.items():
        if k in ("at", "type"):
            continue
        if k in TIME_FIELDS and isinstance(v, int) and not isinstance(v, bool) and v > 0:
            stamp = from_ms(v)
            v = stamp.strftime("%Y-%m-%d %H:%M:%S UTC") if stamp else v
        out[k] = v
    return out


def until(when: datetime | None, now: datetime) -> str:
    """A deadline in words relative to now: 'in 1 h 59 m', 'in 42 s', '3 m ago'."""
    if when is None:
        return "-"
    secs = int((when - now).total_seconds())
    word = "in {}" if secs >= 0 else "{} ago"
    secs = abs(secs)
    days, rest = divmod(secs, 86_400)
    hours, rest = divmod(rest, 3600)
    mins, s = divmod(rest, 60)
    if days:
        text = f"{days} d {hours} h"
    elif hours:
        text = f"{hours} h {mins} m"
    elif mins:
        text = f"{mins} m {s} s"
    else:
        text = f"{s} s"
    return word.format(text)


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of inspection values: dataclasses, RunInfo, datetimes, bytes."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


@dataclass(frozen=True)
class MinuteSeries:
    """One queue's runs completed and failed per minute over the last hour, oldest first
    (60 minutes, the current one last); `start` is the first minute's start."""

    queue: str
    start: datetime | None
    completed: list[int]
    failed: list[int]


async def minute_series(ns: Namespace, queues: list[str], now_ms: int) -> list[MinuteSeries]:
    """Per-minute counts of the last 60 minutes per queue (lib/minute_counts.lua keeps
    them). Cost: one HMGET of 120 fields per queue (and partition: summed), in one
    pipeline."""
    now_min = now_ms // 60_000
    minutes = list(range(now_min - 59, now_min + 1))
    names = [f"{m}:{t}" for m in minutes for t in ("c", "f")]

    def add(pipe: Any, p: int, k: Keys) -> None:
        for q in queues:
            pipe.hmget(k.minutes(q), names)

    parts = await pipelined(ns, add)
    out = []
    for i, q in enumerate(queues):
        counts = sum_rows([part[i] for part in parts])
        out.append(MinuteSeries(q, from_ms(minutes[0] * 60_000), counts[0::2], counts[1::2]))
    return out
