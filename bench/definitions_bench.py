"""What job definitions in Redis (issue 24) cost per start: this checkout against an older
tree, alternated rounds on one server.

    mkdir /tmp/ss-main && git archive main | tar -x -C /tmp/ss-main
    python -m bench.definitions_bench --old-tree /tmp/ss-main [--n 5000] [--repeats 5]

Each row starts n runs (`--inflight` 32 single `start` calls at once, coalesced into few
script calls as the client does; `--inflight 1`: one by one, one script call each)
in a fresh namespace, with bench/definitions_driver.py under that tree's stackshift_redis:
starts/s, Redis CPU per start (INFO cpu) and Redis commands per start (INFO commandstats,
commands inside Lua included). Modes: a job without rules, a job with Concurrency(key)
and priority registered in the caller, and the same job started by name from a process
without it (older tree: `queue_name=`, no rules; this tree: the published rules).
Medians over the repeats; rounds alternate old/new per mode; ratio = new / old.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

from bench.redis_server import RedisServer

BENCH = Path(__file__).resolve().parent
COLUMNS = [
    ("starts_per_s", "starts/s", "{:.0f}"),
    ("redis_cpu_us", "rCPU us/start", "{:.1f}"),
    ("commands_per_start", "cmds/start", "{:.2f}"),
]
MODES = ("plain", "rules", "by-name")


def drive(tree: Path, url: str, mode: str, n: int, inflight: int) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / "definitions_driver.py"), "--redis-url", url,
           "--mode", mode, "--n", str(n), "--inflight", str(inflight)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tree, env=env)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": (out.stderr or out.stdout)[-400:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--old-tree", type=Path, required=True, help="the tree to compare with")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inflight", type=int, default=32, help="starts in flight (1: one by one)")
    p.add_argument("--out", default="definitions", help="results/<date>-<out>.txt")
    a = p.parse_args()
    trees = {"old": a.old_tree, "new": BENCH.parent}
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with RedisServer() as srv:
        for rep in range(a.repeats):
            for mode in MODES:
                order = ("old", "new") if rep % 2 == 0 else ("new", "old")
                for which in order:
                    res = drive(trees[which], srv.url, mode, a.n, a.inflight)
                    print(f"rep {rep + 1} {mode} {which}: {json.dumps(res)}", file=sys.stderr)
                    results.setdefault((mode, which), []).append(res)
    lines = [
        f"definitions_bench {date.today()} n={a.n} repeats={a.repeats} inflight={a.inflight} "
        f"({platform.node()}, {os.cpu_count()} cpus; old tree {a.old_tree})",
        f"{'mode':10} {'tree':4} "
        + " ".join(f"{h:>14}" for _, h, _ in COLUMNS)
        + "  ratio cmds / CPU",
    ]
    for mode in MODES:
        med: dict[str, dict[str, float]] = {}
        for which in ("old", "new"):
            rs = [r for r in results[(mode, which)] if "error" not in r]
            if not rs:
                lines.append(f"{mode:10} {which:4} error: {results[(mode, which)][0]['error']}")
                continue
            med[which] = {c: statistics.median(r[c] for r in rs) for c, _, _ in COLUMNS}
            row = " ".join(f"{f.format(med[which][c]):>14}" for c, _, f in COLUMNS)
            ratio = ""
            if which == "new" and "old" in med:
                o, n_ = med["old"], med["new"]
                ratio = (
                    f"  {n_['commands_per_start'] / o['commands_per_start']:.2f} / "
                    f"{n_['redis_cpu_us'] / o['redis_cpu_us']:.2f}"
                )
            lines.append(f"{mode:10} {which:4} {row}{ratio}")
    text = "\n".join(lines)
    print(text)
    out = BENCH / "results" / f"{date.today()}-{a.out}.txt"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
