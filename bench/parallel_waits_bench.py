"""Durable waits in parallel: a parent that invokes n children, one after another (a loop
of awaits) against one asyncio.gather, and what a lone wait costs.

    git worktree add /tmp/ss-before <commit before parallel waits>
    python -m bench.parallel_waits_bench [--old-tree /tmp/ss-before] [--repeats 3]

Rows (medians over the repeats, one redis-server, one in-process worker of concurrency
32; each child does 100 ms of plain asyncio work):
- fan-out n=10 / n=50, loop vs gather: wall time from start to the parent's result, and
  the parent's executions (each resume re-executes its handler).
- lone waits: 2,000 runs that each wait for one event, then finish: Redis commands and
  script calls per run, from start to parked and from the events to all finished.
With --old-tree every row is also measured on that checkout, in the same run.
"""

# ruff: noqa: ASYNC110  (polling Redis-side state is what a benchmark does)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from bench.redis_server import RedisServer

BENCH = Path(__file__).resolve().parent

CHILD_WORK = 0.1


async def _commands(app: Any) -> tuple[int, int]:
    stats = await app.redis.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_"))
    return calls, int(stats.get("cmdstat_evalsha", {"calls": 0})["calls"])


async def fan_out(url: str, n: int, style: str) -> dict[str, float]:
    from stackshift_redis import RunContext, StackShift

    app = StackShift(url, namespace=f"pw{uuid.uuid4().hex[:8]}")

    @app.job("child")
    async def child(ctx: RunContext) -> int:
        await asyncio.sleep(CHILD_WORK)
        return int(ctx.payload)

    @app.job("parent")
    async def parent(ctx: RunContext) -> int:
        if style == "gather":
            parts = await asyncio.gather(*(ctx.step.invoke(f"c{i}", "child", i) for i in range(n)))
            return sum(parts)
        return sum([await ctx.step.invoke(f"c{i}", "child", i) for i in range(n)])

    worker = app.worker(concurrency=32, poll_interval=0.01, block_ms=50)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    t0 = time.perf_counter()
    run = await app.start("parent")
    assert await run.result(timeout=600) == sum(range(n))
    wall = time.perf_counter() - t0
    info = await app.get_run(run.id)
    await worker.stop()
    await task
    await app.close()
    return {"wall_s": wall, "executions": float(info.executions if info else 0)}


async def lone_waits(url: str, m: int) -> dict[str, float]:
    from stackshift_redis import RunContext, StackShift

    app = StackShift(url, namespace=f"pw{uuid.uuid4().hex[:8]}")

    @app.job("w")
    async def w(ctx: RunContext) -> None:
        await ctx.step.wait_for_event("w", "go", match={"id": ctx.payload})

    worker = app.worker(concurrency=200, poll_interval=0.01, block_ms=50)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.3)
    c0, e0 = await _commands(app)
    t0 = time.perf_counter()
    for lo in range(0, m, 1000):
        await app.start_many("w", list(range(lo, min(m, lo + 1000))))
    while await app.redis.zcard(app._core.keys.idx_status("waiting")) < m:
        await asyncio.sleep(0.01)
    parked = time.perf_counter() - t0
    t1 = time.perf_counter()
    for i in range(m):
        await app.send_event("go", {"id": i})
    while await app.redis.zcard(app._core.keys.idx_status("completed")) < m:
        await asyncio.sleep(0.01)
    resumed = time.perf_counter() - t1
    c1, e1 = await _commands(app)
    await worker.stop()
    await task
    await app.close()
    return {"park_s": parked, "resume_s": resumed, "cmds_per_run": (c1 - c0) / m,
            "scripts_per_run": (e1 - e0) / m}  # fmt: skip


async def measure(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (10, 50):
        for style in ("loop", "gather"):
            out[f"fan-out n={n}, {style}"] = await fan_out(url, n, style)
    out["lone waits (2,000 runs)"] = await lone_waits(url, 2000)
    return out


def run_tree(tree: Path, url: str) -> dict[str, Any]:
    # that tree's stackshift_redis first, then this checkout's bench package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(BENCH.parent)])}
    cmd = [sys.executable, "-m", "bench.parallel_waits_bench", "--child", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env, cwd=tree)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"{tree}: {(out.stderr or out.stdout)[-600:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--old-tree", type=Path)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(asyncio.run(measure(a.child))))
        return
    trees = [("main", BENCH.parent)] + ([("before", a.old_tree)] if a.old_tree else [])
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    with RedisServer() as server:
        for _ in range(a.repeats):
            for name, tree in trees:
                samples[name].append(run_tree(tree, server.url))
    lines = [f"parallel waits bench, {date.today()}, medians of {a.repeats}", ""]
    for row in samples["main"][0]:
        for name, _ in trees:
            keys = samples[name][0][row].keys()
            med = {k: statistics.median(s[row][k] for s in samples[name]) for k in keys}
            cells = "  ".join(f"{k}={v:.3g}" for k, v in med.items())
            lines.append(f"{row:<28} {name:<7} {cells}")
    text = "\n".join(lines)
    print(text)
    out = BENCH / "results" / f"{date.today()}-parallel-waits.txt"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
