"""Schedules: what an idle worker costs Redis with 10 and with 10,000 schedules, and the lag
between a tick and its run starting.

Idle cost: N schedules that do not fire during the window (a yearly cron), one worker
(default settings) running; Redis CPU (INFO cpu: user + sys) and commands processed per
second over the window, measured on a dedicated redis-server; "in commands" is the time
Redis spent executing commands (INFO commandstats usec, our INFO calls excluded), which
leaves out its background cron and network work. Lag: `--ticking` schedules
with every=1 (on top of the 10,000 idle ones); per run, the wall time at the start of the
handler minus its tick (`ctx.scheduled_at`); same machine, so one clock.

    python -m bench.schedules_bench [--sizes 10,10000] [--window 10] [--lag-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from bench.redis_server import RedisServer
from stackshift_redis import RunContext, StackShift


async def _counters(app: StackShift) -> tuple[float, int, int, int]:
    """(Redis CPU seconds, commands processed, EVALSHA calls, usec in all commands)."""
    cpu = await app.redis.info("cpu")
    stats = await app.redis.info("stats")
    cmd = await app.redis.info("commandstats")
    evalsha = int(cmd.get("cmdstat_evalsha", {"calls": 0})["calls"])
    usec = sum(int(v["usec"]) for k, v in cmd.items() if k != "cmdstat_info")
    used = float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    return used, int(stats["total_commands_processed"]), evalsha, usec


async def _create(app: StackShift, n: int, prefix: str, **kw: Any) -> None:
    for lo in range(0, n, 200):
        await asyncio.gather(*(
            app.schedules.create(f"{prefix}{i}", **kw) for i in range(lo, min(n, lo + 200))
        ))  # fmt: skip


async def idle_cost(url: str, n: int, window: float) -> dict[str, float]:
    """Redis CPU ms/s and commands/s of one idle worker with `n` schedules."""
    app = StackShift(url, namespace=f"sb{uuid.uuid4().hex[:8]}")
    app.job("yearly", lambda ctx: None)
    await _create(app, n, "y", job="yearly", cron="0 0 1 1 *")
    worker = app.worker(concurrency=10)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(2)  # setup done, steady state
    cpu0, cmds0, ev0, us0 = await _counters(app)
    t0 = time.monotonic()
    await asyncio.sleep(window)
    cpu1, cmds1, ev1, us1 = await _counters(app)
    secs = time.monotonic() - t0
    await worker.stop()
    await task
    await app.redis.flushall()
    await app.close()
    return {
        "cpu_ms_per_s": (cpu1 - cpu0) * 1000 / secs,
        "cmds_per_s": (cmds1 - cmds0 - 3) / secs,  # less our own 3 INFO calls
        "evalsha_per_s": (ev1 - ev0) / secs,
        "cmd_us_per_s": (us1 - us0) / secs,
    }


async def lag(url: str, idle: int, ticking: int, seconds: float) -> list[float]:
    """Tick -> run-start lags (ms) of `ticking` every=1 schedules among `idle` others."""
    app = StackShift(url, namespace=f"sl{uuid.uuid4().hex[:8]}")
    lags: list[float] = []
    app.job("yearly", lambda ctx: None)

    @app.job("tick")
    async def tick(ctx: RunContext) -> None:
        if ctx.scheduled_at is not None:
            lags.append(time.time() * 1000 - ctx.scheduled_at.timestamp() * 1000)

    await _create(app, idle, "y", job="yearly", cron="0 0 1 1 *")
    worker = app.worker(concurrency=50)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(1)
    await _create(app, ticking, "t", job="tick", every=1)
    await asyncio.sleep(seconds)
    for i in range(ticking):
        await app.schedules.delete(f"t{i}")
    await asyncio.sleep(1)
    await worker.stop()
    await task
    await app.redis.flushall()
    await app.close()
    return lags


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10,10000")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--lag-seconds", type=float, default=20.0)
    ap.add_argument("--ticking", type=int, default=10)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with RedisServer() as server:
        print(f"idle worker (default settings), {args.window:g} s window per size")
        print(f"{'schedules':>10} {'redis CPU ms/s':>15} {'commands/s':>11} {'EVALSHA/s':>10} "
              f"{'in commands us/s':>17}")  # fmt: skip
        for n in sizes:
            r = await idle_cost(server.url, n, args.window)
            print(f"{n:>10} {r['cpu_ms_per_s']:>15.2f} {r['cmds_per_s']:>11.1f} "
                  f"{r['evalsha_per_s']:>10.1f} {r['cmd_us_per_s']:>17.1f}")  # fmt: skip
        idle = max(sizes)
        lags = await lag(server.url, idle, args.ticking, args.lag_seconds)
        print(
            f"\ntick -> run start lag: {args.ticking} every=1 schedules among {idle} idle, "
            f"{args.lag_seconds:g} s, one worker: {len(lags)} runs"
        )
        if lags:
            print(f"p50 {statistics.median(lags):.1f} ms   p99 {_pct(lags, 99):.1f} ms   "
                  f"max {max(lags):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
