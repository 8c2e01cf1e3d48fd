"""The dispatch spike: today's stream-of-run-ids take path against the ready-set take path
(priority and round-robin groups in front of a ticket stream), in one run, one server.

    git worktree add /tmp/ss-old d10c57a     # the last commit with runs in the stream
    python -m bench.dispatch_spike --old-tree /tmp/ss-old [--n 20000] [--repeats 3]

Each row drains n queued no-op runs with ONE worker process at default settings
(bench/peers/stackshift_driver.py --mode process): runs/s, Redis CPU per run, Redis
commands per run (incl. inside Lua), client reads per run (~round trips) and memory per
queued run. Medians over the repeats, rows interleaved; ratio = row / the first row.
Without --old-tree the first row is the plain no-op; the others use the flow-control API
(priorities over 5 levels; per-key concurrency with 1000 keys at limit 10: not binding).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from bench.redis_server import RedisServer

BENCH = Path(__file__).resolve().parent

COLUMNS = [
    ("proc_rate", "runs/s", "{:.0f}"),
    ("redis_cpu_us", "rCPU us/run", "{:.1f}"),
    ("commands_per_job", "cmds/run", "{:.1f}"),
    ("reads_per_job", "RTs/run", "{:.2f}"),
    ("bytes_per_job", "B/run", "{:.0f}"),
]


def drive(tree: Path, url: str, n: int, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(tree / "bench" / "peers" / "stackshift_driver.py"),
           "--mode", "process", "--n", str(n), "--redis-url", url, "--flush", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}  # that tree's stackshift_redis
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tree, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-400:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--old-tree", type=Path, help="a checkout of d10c57a (stream row)")
    p.add_argument("--old-label", default="stream of run ids (d10c57a)", help="its row name")
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="dispatch-spike", help="results/<date>-<out>.txt")
    a = p.parse_args()
    here = BENCH.parent
    rows: list[tuple[str, Path, list[str]]] = []
    if a.old_tree:
        rows.append((a.old_label, a.old_tree, []))
    rows += [
        ("plain no-op (ready set + tickets)", here, []),
        ("priority= over 5 levels", here, ["--dispatch", "prio5"]),
        ("Concurrency(10, key), 1000 keys", here, ["--dispatch", "groups1000"]),
    ]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in rows}
    with RedisServer() as srv:
        for rep in range(a.repeats):
            for name, tree, extra in rows:
                res = drive(tree, srv.url, a.n, extra)
                print(f"rep {rep + 1} {name}: {json.dumps(res)[:300]}", file=sys.stderr)
                results[name].append(res)
    base = rows[0][0]
    med = {
        name: {c: statistics.median(r[c] for r in rs if c in r) for c, _, _ in COLUMNS}
        for name, rs in results.items()
        if all("error" not in r for r in rs)
    }
    lines = [
        f"dispatch spike, {date.today()}: one worker drains n={a.n} queued no-op runs "
        f"(median of {a.repeats}); [ratio to '{base}']",
        f"{'take path':38}" + "".join(f"{h:>22}" for _, h, _ in COLUMNS),
    ]
    for name, _, _ in rows:
        if name not in med:
            err = next((r["error"] for r in results[name] if "error" in r), "?")
            lines.append(f"{name:38} error: {str(err)[:200]}")
            continue
        cells = []
        for c, _, fmt in COLUMNS:
            v = med[name][c]
            ratio = v / med[base][c] if base in med and med[base][c] else float("nan")
            cells.append(f"{fmt.format(v)} [{ratio:.2f}]")
        lines.append(f"{name:38}" + "".join(f"{c:>22}" for c in cells))
    text = "\n".join(lines)
    print(text)
    out = BENCH / "results" / f"{date.today()}-{a.out}.txt"
    out.write_text(text + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
