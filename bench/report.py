"""Medians over repeats and the one results table (plain text)."""

from __future__ import annotations

import statistics
import textwrap
from dataclasses import dataclass
from typing import Any

BASE = "stackshift"


@dataclass(frozen=True)
class Metric:
    key: str
    header: str
    kind: str  # "rate": higher is better; "cost": lower is better


METRICS = [
    Metric("seq_rate", "1-by-1/s", "rate"),
    Metric("par_rate", "32-fl/s", "rate"),
    Metric("bulk_rate", "bulk/s", "rate"),
    Metric("proc_rate", "proc/s", "rate"),
    Metric("calls_per_job", "cmds/job", "cost"),
    Metric("reads_per_job", "RTs/job", "cost"),
    Metric("worker_cpu_us", "wCPU us/job", "cost"),
    Metric("redis_cpu_us", "rCPU us/job", "cost"),
    Metric("bytes_per_job", "B/job", "cost"),
]
LEGEND = (
    "1-by-1/s, 32-fl/s, bulk/s: enqueue rates (sequential awaits; 32 in flight; bulk API in "
    "chunks of 1000). proc/s: one worker draining n queued no-op jobs. cmds/job: Redis "
    "commands incl. those inside Lua; RTs/job: client reads (~round trips); wCPU/rCPU: "
    "worker / redis-server CPU; B/job: used_memory per queued job."
)


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [float(r[key]) for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100_000:
        return f"{v / 1000:.0f}k"
    if a >= 10_000:
        return f"{v / 1000:.1f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """lib -> {metric key: median, "n": ..., "errors": [...], "version": ...}."""
    out: dict[str, dict[str, Any]] = {}
    for lib, rs in runs.items():
        s: dict[str, Any] = {m.key: median_of(rs, m.key) for m in METRICS}
        s["n"] = median_of([r for r in rs if r.get("mode") == "process"], "n")
        s["runs"] = sum(1 for r in rs if r.get("mode") == "process" and "proc_rate" in r)
        s["version"] = next((r["version"] for r in rs if r.get("version")), "?")
        s["errors"] = sorted({str(r["error"]) for r in rs if r.get("error")})
        out[lib] = s
    return out


def _line(cells: list[str], widths: list[int]) -> str:
    """First column left-aligned, the rest right-aligned."""
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)


def table(summary: dict[str, dict[str, Any]], notes: dict[str, str]) -> str:
    """Rows = libraries; each cell 'median [stackshift/peer]'."""
    base = summary.get(BASE, {})
    head = ["library", "n", *[m.header for m in METRICS]]
    rows: list[list[str]] = []
    for lib, s in summary.items():
        row = [lib, fmt(s["n"])]
        for m in METRICS:
            v, b = s.get(m.key), base.get(m.key)
            cell = fmt(v)
            if lib != BASE and not lib.startswith(BASE) and v and b is not None:
                cell += f" [{b / v:.2f}]"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    out = [_line(head, widths), line, *(_line(r, widths) for r in rows)]
    out.append(line)
    out.append(textwrap.fill(LEGEND, 100))
    out.append(
        textwrap.fill(
            "Cells: median over repeats [stackshift / peer]. For /s columns a ratio > 1 means "
            "stackshift is faster; for per-job costs a ratio > 1 means stackshift spends more.",
            100,
        )
    )
    out.append("")
    out.append("versions and worker settings (library defaults, one worker process):")
    for lib, s in summary.items():
        runs = f"{s['runs']} ok process runs"
        out.append(f"  {lib:<20} {s['version']:<28} {notes.get(lib, '')}  ({runs})")
    errs = [(lib, e) for lib, s in summary.items() for e in s["errors"]]
    if errs:
        out.append("")
        out.append("errors (the row shows medians of the runs that succeeded, '-' if none):")
        for lib, e in errs:
            out.append(f"  {lib}: {' '.join(e.split())[:300]}")
    return "\n".join(out)
