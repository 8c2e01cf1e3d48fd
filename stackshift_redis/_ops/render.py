"""Human output of the `stackshift` command: aligned tables and panels drawn with rich."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .._client.inspector import QueueStats, Waiter, WorkerInfo, jsonable
from .._client.views import RunView, WaitView, entry_details, until
from .._core.records import Event, RunInfo

# piped output (scripts, tests) is not cut to 80 columns: ids must stay whole
console = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "waiting": "magenta",
    "queued": "blue",
    "scheduled": "blue",
}


def when(value: datetime | None) -> str:
    """A compact UTC time, or '-'."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def span(start: datetime | None, end: datetime | None) -> str:
    """A duration between two times as '1.234s', or '-'."""
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.3f}s"


def status(value: str) -> str:
    """A status with its colour."""
    return f"[{STATUS_STYLE.get(value, 'white')}]{value}[/]"


def as_json(value: Any) -> str:
    """Pretty JSON of a payload or result."""
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


def runs_table(page: Sequence[RunInfo]) -> None:
    """One page of runs."""
    t = Table(show_edge=False, header_style="bold")
    for col in ("run id", "job", "queue", "status", "attempts", "created", "duration"):
        t.add_column(col, justify="right" if col == "attempts" else "left", no_wrap=True)
    for r in page:
        t.add_row(
            r.id,
            r.job,
            r.queue,
            status(r.status.value) + (" [red]damaged[/]" if r.damaged else ""),
            str(r.attempts),
            when(r.created_at),
            span(r.started_at, r.finished_at),
        )
    console.print(t)
    for r in page:  # one line each: what of its record cannot be read
        if r.damaged:
            console.print(f"run {r.id} ({r.status.value}) is damaged: {r.damaged}", markup=False)


def run_detail(view: RunView) -> None:
    """Everything about one run: facts, links, payload, result or error, each step with
    its result or error and duration, what a waiting run waits for, the timeline."""
    info = view.info
    now = datetime.now(UTC)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("run", info.id)
    head.add_row("job / queue", f"{info.job} / {info.queue}")
    head.add_row("status", status(info.status.value))
    if info.version != 1 or info.unserved:
        note = "  (queued: no live worker serves this version)" if info.unserved else ""
        head.add_row("version", f"{info.version}{note}")
    head.add_row("attempts", str(info.attempts))
    head.add_row("created", when(info.created_at))
    head.add_row("started", when(info.started_at))
    head.add_row(
        "finished", f"{when(info.finished_at)}  ({span(info.created_at, info.finished_at)})"
    )
    for label, ids in (
        ("parent", [info.parent_id]),
        ("child", view.children),
        ("replay of", [info.replay_of]),
        ("replayed as", view.replays),
        ("failure handler", view.failure_handlers),
        ("handles failure of", [view.failure_of]),
    ):
        for rid in ids:
            if rid:
                head.add_row(label, rid)
    console.print(head)
    if view.waits:
        console.rule("[magenta]waiting for[/]", align="left")
        for w in view.waits:
            console.print(f"step {w.step}: {wait_text(w, now)}", markup=False)
    console.rule("payload", align="left")
    console.print(as_json(info.payload), markup=False)
    if info.error:
        console.rule("[red]error[/]", align="left")
        console.print(f"{info.error.get('type')}: {info.error.get('message')}", markup=False)
        if info.error.get("traceback"):
            console.print(str(info.error["traceback"]).rstrip(), markup=False)
    elif info.status.value == "completed":
        console.rule("result", align="left")
        console.print(as_json(info.result), markup=False)
    if view.steps:
        console.rule("steps", align="left")
        t = Table(show_edge=False, header_style="bold")
        for col in ("step", "outcome", "duration", "result or error"):
            t.add_column(col, no_wrap=col != "result or error")
        for st in view.steps:
            dur = f"{st.duration:.3f}s" if st.duration is not None else "-"
            text = st.text if len(st.text) <= 2000 else st.text[:2000] + " ..."
            t.add_row(st.name, st.status, dur, text)
        console.print(t)
    commits = [(name, s["tx"]) for name, s in info.steps.items() if "tx" in s]
    if commits:
        console.rule("transactions", align="left")
        for line in tx_lines(commits):
            console.print(line, markup=False)
    console.rule("timeline", align="left")
    t = Table(show_edge=False, header_style="bold")
    for col in ("at", "event", "details"):
        t.add_column(col)
    for e in info.timeline:
        extra = entry_details(e)
        t.add_row(
            when(e.get("at")), str(e.get("type")), json.dumps(jsonable(extra)) if extra else ""
        )
    console.print(t)


def wait_text(w: WaitView, now: datetime) -> str:
    """What one pending wait waits for and until when, in words."""
    if w.kind == "event":
        what = f"event {w.event}" + (f" matching {', '.join(w.match_on)}" if w.match_on else "")
    elif w.kind == "child":
        what = f"child run {w.child}"
    else:
        what = "a timer (sleep)"
    if w.due is None:
        return what + ", no timeout"
    label = "until" if w.kind == "sleep" else "timeout at"
    return f"{what}, {label} {when(w.due)} UTC ({until(w.due, now)})"


def tx_lines(commits: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Plain text of what transactional steps committed, one line per kind of effect."""
    out: list[str] = []
    for name, tx in commits:
        out.append(f"{name}:")
        for kind in ("set", "deleted", "started"):
            if tx.get(kind):
                out.append(f"  {kind:<8} {', '.join(map(str, tx[kind]))}")
        for ev in tx.get("events") or ():
            out.append(f"  event    {ev[0]} (id {ev[1]})")
    return out


def queues_table(stats: Sequence[QueueStats]) -> None:
    """Per-queue counters."""
    t = Table(show_edge=False, header_style="bold")
    cols = (
        "queue",
        "ready",
        "scheduled",
        "running",
        "waiting",
        "paused",
        "concurrency",
        "done 1m",
        "failed 1m",
        "done 1h",
        "failed 1h",
    )
    for col in cols:
        t.add_column(col, justify="left" if col == "queue" else "right", no_wrap=True)
    for q in stats:
        t.add_row(
            q.name,
            f"{q.ready}{'' if q.ready_exact else '+'}"
            + (f" (+{q.unserved} unserved)" if q.unserved else ""),
            str(q.scheduled),
            str(q.running),
            str(q.waiting),
            "[yellow]yes[/]" if q.paused else "no",
            str(q.concurrency or "-"),
            str(q.completed_1m),
            str(q.failed_1m),
            str(q.completed_1h),
            str(q.failed_1h),
        )
    console.print(t)


def workers_table(found: Sequence[WorkerInfo]) -> None:
    """Workers and their heartbeats."""
    t = Table(show_edge=False, header_style="bold")
    for col in ("worker id", "host", "pid", "queues", "running", "last heartbeat", "state"):
        t.add_column(col, no_wrap=True)
    for w in found:
        age = f"{w.heartbeat_age:.0f}s ago" if w.heartbeat_age is not None else "-"
        running = f"{w.running}/{w.concurrency}" if w.running is not None else "-"
        t.add_row(
            w.id,
            w.host,
            str(w.pid or "-"),
            ", ".join(w.queues) or "-",
            running,
            age,
            "[green]alive[/]" if w.alive else "[red]gone[/]",
        )
    console.print(t)


def events_tables(recent: Sequence[Event], waiting: Sequence[Waiter]) -> None:
    """Recent events, then waiting runs and what they wait for."""
    t = Table(title="recent events", show_edge=False, header_style="bold", title_justify="left")
    for col in ("at", "event", "id", "data"):
        t.add_column(col)
    for e in recent:
        t.add_row(when(e.ts), e.name, e.id, json.dumps(jsonable(e.data))[:80])
    console.print(t if recent else "no recent events")
    t = Table(title="waiting runs", show_edge=False, header_style="bold", title_justify="left")
    for col in ("run id", "job", "step", "waits for", "since", "until / timeout"):
        t.add_column(col, no_wrap=True)
    now = datetime.now(UTC)
    for w in waiting:
        due = f"{when(w.due)} ({until(w.due, now)})" if w.due else "none"
        t.add_row(w.run_id, w.job, w.step, waits_for(w), when(w.since), due)
    console.print(t if waiting else "no runs are waiting")


def waits_for(w: Waiter) -> str:
    """What a waiting run waits for, in words."""
    if w.kind == "event":
        return f"event {w.event}" + (f" matching {', '.join(w.match_on)}" if w.match_on else "")
    if w.kind == "child":
        return f"child run {w.child}"
    return "a timer (sleep)"


def schedules_table(infos: Sequence[Any]) -> None:
    """Schedules (ScheduleInfo objects)."""
    t = Table(show_edge=False, header_style="bold")
    for col in ("name", "job", "cron / every", "timezone", "paused", "next fire", "last run"):
        t.add_column(col, no_wrap=True)
    for s in infos:
        every = getattr(s, "every", None)
        every = f"every {every.total_seconds():g} s" if every is not None else None
        t.add_row(
            s.name,
            s.job,
            str(getattr(s, "cron", None) or every or "-"),
            str(getattr(s, "timezone", "-")),
            "yes" if getattr(s, "paused", False) else "no",
            when(getattr(s, "next_fire_at", None)),
            str(getattr(s, "last_run_id", None) or "-"),
        )
    console.print(t)
