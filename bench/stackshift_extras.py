"""stackshift-redis-only measurements (main environment, a Redis the harness owns):

* retry: runs with 3 memoized steps that fail on attempt 1 after 2 steps and succeed on
  attempt 2; counts step executions (memoized: 3 per run, not 5) and attempts.
* delayed: `start_many(..., delay=3600)` in chunks up to D runs (default 10^6): rate and
  bytes per scheduled run.
* promote / idle: cost of the due-run promotion with 1,000 vs D not-due runs, measured
  two ways: the promotion script itself (`app._core.scripts.promote`, an internal) and one
  idle worker's upkeep loop over a fixed window (public API). Both must stay flat.

Prints one JSON line. Usage: python -m bench.stackshift_extras --redis-url URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.peers._common import info
from stackshift_redis import StackShift

BENCH = Path(__file__).resolve().parent

SMALL = 1000
CHUNK = 10_000
PROMOTE_CALLS = 300
IDLE_WINDOW_S = 3.0
DELAY_S = 3600
steps_done: Counter[str] = Counter()


def _count(name: str) -> int:
    steps_done[name] += 1
    return 1


def make_app(url: str) -> StackShift:
    app = StackShift(redis_url=url, namespace="extras")

    @app.job("retry3", queue="retry", retries=2)
    async def retry3(ctx: Any) -> int:
        a = await ctx.step.run("a", _count, "a")
        b = await ctx.step.run("b", _count, "b")
        if ctx.attempt == 1:
            raise RuntimeError("planned failure on attempt 1")
        c = await ctx.step.run("c", _count, "c")
        return int(a + b + c)

    @app.job("later", queue="delayed")
    async def later(ctx: Any) -> None:
        return None

    return app


async def bench_retry(app: StackShift, runs: int) -> dict[str, Any]:
    worker = app.worker(queues=["retry"])
    task = asyncio.create_task(worker.run())
    try:
        t0 = time.perf_counter()
        handles = await app.start_many("retry3", [{"i": i} for i in range(runs)])
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
        wall = time.perf_counter() - t0
        infos = await asyncio.gather(*(app.get_run(h.id) for h in handles))
    finally:
        await asyncio.wait_for(worker.stop(), 60)
        await asyncio.wait_for(task, 10)
    attempts = sum(int(getattr(i, "attempts", 0) or 0) for i in infos)
    return {
        "runs": runs,
        "completed": sum(1 for r in results if r == 3),
        "attempts": attempts,
        "step_executions": sum(steps_done.values()),
        "expected_if_memoized": 3 * runs,
        "without_memo_would_be": 5 * runs,
        "a/b/c": f"{steps_done['a']}/{steps_done['b']}/{steps_done['c']}",
        "wall_s": wall,
    }


async def fill(app: StackShift, url: str, start: int, stop: int) -> tuple[float, float]:
    """Schedule runs [start, stop) with delay; returns (runs/s, bytes per run)."""
    m0 = info(url)["memory"]
    t0 = time.perf_counter()
    for lo in range(start, stop, CHUNK):
        payloads = [{"i": i} for i in range(lo, min(lo + CHUNK, stop))]
        await app.start_many("later", payloads, delay=DELAY_S)
    dt = time.perf_counter() - t0
    return (stop - start) / dt, (info(url)["memory"] - m0) / max(1, stop - start)


async def promote_cost(app: StackShift, url: str) -> dict[str, float] | str:
    promote = getattr(getattr(app._core, "scripts", None), "promote", None)
    if promote is None:
        return "app._core.scripts.promote not found"
    await promote("delayed")
    s0, t0 = info(url), time.perf_counter()
    moved = 0
    for _ in range(PROMOTE_CALLS):
        reply = await promote("delayed")
        moved += int(reply[0])
    dt, s1 = time.perf_counter() - t0, info(url)
    return {
        "us_per_call": dt / PROMOTE_CALLS * 1e6,
        "redis_cpu_us_per_call": (s1["cpu"] - s0["cpu"]) / PROMOTE_CALLS * 1e6,
        "cmds_per_call": (s1["calls"] - s0["calls"]) / PROMOTE_CALLS,
        "moved": moved,
    }


async def idle_cost(app: StackShift, url: str) -> dict[str, float]:
    """One idle worker on the delayed queue for a fixed window: Redis load and own CPU."""
    worker = app.worker(queues=["delayed"])
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.5)  # past setup
    s0, c0 = info(url), time.process_time()
    await asyncio.sleep(IDLE_WINDOW_S)
    s1, c1 = info(url), time.process_time()
    await asyncio.wait_for(worker.stop(), 60)
    await asyncio.wait_for(task, 10)
    w = IDLE_WINDOW_S
    return {
        "redis_cmds_per_s": (s1["calls"] - s0["calls"]) / w,
        "redis_cpu_ms_per_s": (s1["cpu"] - s0["cpu"]) / w * 1e3,
        "worker_cpu_ms_per_s": (c1 - c0) / w * 1e3,
    }


async def amain(url: str, delayed: int, retry_runs: int) -> dict[str, Any]:
    app = make_app(url)
    out: dict[str, Any] = {}
    try:
        out["retry"] = await bench_retry(app, retry_runs)
    except Exception as e:
        out["retry"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    try:
        await fill(app, url, 0, min(SMALL, delayed))
        p_small, i_small = await promote_cost(app, url), await idle_cost(app, url)
        big_rate, big_bytes = await fill(app, url, SMALL, max(SMALL, delayed))
        p_big, i_big = await promote_cost(app, url), await idle_cost(app, url)
        out["delayed"] = {"scheduled": delayed, "start_many_per_s": big_rate,
                          "bytes_per_run": big_bytes}  # fmt: skip
        if isinstance(p_small, dict) and isinstance(p_big, dict):
            out["promote"] = {
                f"us/call@{SMALL}": p_small["us_per_call"],
                f"us/call@{delayed}": p_big["us_per_call"],
                f"redisCPUus/call@{SMALL}": p_small["redis_cpu_us_per_call"],
                f"redisCPUus/call@{delayed}": p_big["redis_cpu_us_per_call"],
                "cmds/call": p_big["cmds_per_call"],
                "moved": p_small["moved"] + p_big["moved"],
            }
        else:
            out["promote"] = {"skipped": p_small}
        out["idle_worker"] = {f"{k}@{SMALL}": v for k, v in i_small.items()} | {
            f"{k}@{delayed}": v for k, v in i_big.items()
        }
    except Exception as e:
        out["delayed"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    finally:
        await app.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--delayed", type=int, default=1_000_000)
    p.add_argument("--retry-runs", type=int, default=100)
    a = p.parse_args()
    print(json.dumps(asyncio.run(amain(a.redis_url, a.delayed, a.retry_runs))), flush=True)


if __name__ == "__main__":
    main()
