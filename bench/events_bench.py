"""Event correlation cost: send_event latency and Redis time as waiting runs grow
(100 -> 10,000 waiters over 100 correlation values), and send_event -> resumed-run latency.

    python -m bench.events_bench [--sizes 100,1000,10000] [--sends 200]
"""

# ruff: noqa: ASYNC110  (polling Redis-side state is what a benchmark does)
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from bench.redis_server import RedisServer
from stackshift_redis import RunContext, StackShift


async def _evalsha_usec(app: StackShift) -> tuple[int, int]:
    stats = await app.redis.info("commandstats")
    s = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(s["calls"]), int(s["usec"])


async def measure(url: str, waiters: int, sends: int) -> dict[str, float]:
    app = StackShift(url, namespace=f"ev{uuid.uuid4().hex[:8]}")
    resumed_at: dict[str, float] = {}

    @app.job("waiter")
    async def waiter(ctx: RunContext) -> None:
        await ctx.step.wait_for_event("w", event="pay", match={"order": ctx.payload})
        resumed_at[ctx.payload] = time.perf_counter()

    worker = app.worker(concurrency=200, poll_interval=0.02, block_ms=100)
    task = asyncio.create_task(worker.run())
    for lo in range(0, waiters, 1000):
        n = min(1000, waiters - lo)
        await app.start_many("waiter", [f"v{(lo + i) % 100}" for i in range(n)])
    while await app.redis.zcard(app._core.keys.idx_status("waiting")) < waiters:
        await asyncio.sleep(0.05)
    await worker.stop()  # measure send_event alone (no worker commands mixed in)
    await task
    # a non-matching event: cost must not grow with the number of waiters
    latencies: list[float] = []
    calls0, usec0 = await _evalsha_usec(app)
    for i in range(sends):
        t0 = time.perf_counter()
        await app.send_event("pay", {"order": f"nobody-{i}"})
        latencies.append(time.perf_counter() - t0)
    calls1, usec1 = await _evalsha_usec(app)
    # probes: one waiter each; time from send_event to the resumed run going on
    worker = app.worker(concurrency=200, poll_interval=0.02, block_ms=100)
    task = asyncio.create_task(worker.run())
    probes = [f"probe-{i}" for i in range(30)]
    await app.start_many("waiter", probes)
    while await app.redis.zcard(app._core.keys.idx_status("waiting")) < waiters + len(probes):
        await asyncio.sleep(0.02)
    resume: list[float] = []
    for p in probes:
        t0 = time.perf_counter()
        await app.send_event("pay", {"order": p})
        while p not in resumed_at:
            await asyncio.sleep(0.0005)
        resume.append(resumed_at[p] - t0)
    await worker.stop(force=True)
    await task
    await app.close()
    return {
        "waiters": waiters,
        "send_ms_p50": statistics.median(latencies) * 1000,
        "redis_us_per_send": (usec1 - usec0) / max(1, calls1 - calls0),
        "resume_ms_p50": statistics.median(resume) * 1000,
        "resume_ms_max": max(resume) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--sends", type=int, default=200)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with RedisServer() as server:
        for size in [int(s) for s in args.sizes.split(",")]:
            rows.append(await measure(server.url, size, args.sends))
    print(f"{'waiters':>8} {'send p50 ms':>12} {'redis us/send':>14} {'resume p50 ms':>14} "
          f"{'resume max ms':>14}")  # fmt: skip
    for r in rows:
        print(f"{r['waiters']:>8} {r['send_ms_p50']:>12.3f} {r['redis_us_per_send']:>14.1f} "
              f"{r['resume_ms_p50']:>14.2f} {r['resume_ms_max']:>14.2f}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
