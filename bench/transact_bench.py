"""A transactional step against `step.run` plus the same state calls made outside a
transaction: Redis CPU and commands (round trips) per step.

    python -m bench.transact_bench [--runs 2000] [--repeats 5]

Three jobs, measured in alternating rounds on one throwaway redis-server; each round
starts `--runs` runs of one job (not counted), then one in-process worker (concurrency
16) drains them (counted, as /work/shared/tools/cost-probe.py does):
- noop: the handler returns (the run's own cost: start, take, finish; the baseline)
- transact: one `ctx.step.transact` step: 2 reads, 3 writes, 1 event
- plain: one `ctx.step.run` step whose function makes the same calls through
  `ctx.state` (2 GET, 3 SET) and `send_event` (1 script)
Per step = job - noop, per run: round trips (counted in the client: commands sent, a
script call or a pipeline is one), commands Redis executed (commandstats: a script's own
calls included) and Redis CPU (INFO cpu, main thread, user + sys). Medians of the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from bench.redis_server import RedisServer

BENCH = Path(__file__).resolve().parent
JOBS = ("noop", "transact", "plain")


TRIPS = [0]  # client round trips: commands sent (a script call is one) and pipelines


def _count_round_trips(app: Any) -> None:
    from redis.asyncio.client import Pipeline

    send = app.redis.execute_command
    execute = Pipeline.execute

    async def counted(*args: Any, **kwargs: Any) -> Any:
        TRIPS[0] += 1
        return await send(*args, **kwargs)

    async def counted_pipe(self: Any, *args: Any, **kwargs: Any) -> Any:
        TRIPS[0] += 1
        return await execute(self, *args, **kwargs)

    app.redis.execute_command = counted
    Pipeline.execute = counted_pipe  # type: ignore[method-assign]


async def _counters(app: Any) -> tuple[int, int, float]:
    stats = await app.redis.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_"))
    cpu = await app.redis.info("cpu")
    used = float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])
    return TRIPS[0], calls, used


def _app(url: str) -> Any:
    from stackshift_redis import RunContext, StackShift, StateTx

    app = StackShift(url, namespace=f"tx{uuid.uuid4().hex[:8]}")

    @app.job("noop")
    async def noop(ctx: RunContext) -> None:
        return None

    async def body(tx: StateTx, i: int) -> int:
        a = await tx.get(f"a:{i % 100}", 0)
        b = await tx.get(f"b:{i % 100}", 0)
        tx.set(f"a:{i % 100}", a + 1)
        tx.set(f"b:{i % 100}", b + 1)
        tx.set(f"last:{i}", {"a": a, "b": b}, ttl=3600)
        tx.send_event("bench.tx", {"i": i})
        return int(a)

    @app.job("transact")
    async def transact(ctx: RunContext) -> int:
        return int(await ctx.step.transact("t", body, ctx.payload))

    @app.job("plain")
    async def plain(ctx: RunContext) -> int:
        i, st = ctx.payload, ctx.state

        async def step() -> int:
            a = await st.get(f"a:{i % 100}", 0)
            b = await st.get(f"b:{i % 100}", 0)
            await st.set(f"a:{i % 100}", a + 1)
            await st.set(f"b:{i % 100}", b + 1)
            await st.set(f"last:{i}", {"a": a, "b": b}, ttl=3600)
            await app.send_event("bench.tx", {"i": i}, id=f"{ctx.run_id}:t")
            return int(a)

        return int(await ctx.step.run("t", step))

    return app


async def round_of(app: Any, job: str, runs: int) -> dict[str, float]:
    """Start `runs` runs (not counted), then drain them with one worker (counted)."""
    for lo in range(0, runs, 500):
        await app.start_many(job, list(range(lo, min(runs, lo + 500))))
    r0, c0, cpu0 = await _counters(app)
    t0 = time.perf_counter()
    await app.worker(concurrency=16, poll_interval=0.01, block_ms=50).run(burst=True)
    wall = time.perf_counter() - t0
    r1, c1, cpu1 = await _counters(app)
    done = await app.redis.zcard(app._core.keys.idx_job_status(job, "completed"))
    assert done >= runs, f"{job}: {done} completed of {runs}"
    return {
        "trips": (r1 - r0 - 3) / runs,  # (the three INFO calls of _counters)
        "cmds": (c1 - c0) / runs,
        "cpu_us": (cpu1 - cpu0) / runs * 1e6,
        "wall_s": wall,
    }


async def measure(url: str, runs: int, repeats: int) -> dict[str, list[dict[str, float]]]:
    app = _app(url)
    _count_round_trips(app)
    for job in JOBS:  # warm up: scripts loaded, keys created
        await round_of(app, job, 200)
    samples: dict[str, list[dict[str, float]]] = {j: [] for j in JOBS}
    for _ in range(repeats):
        for job in JOBS:
            samples[job].append(await round_of(app, job, runs))
    await app.close()
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    with RedisServer() as server:
        samples = asyncio.run(measure(server.url, a.runs, a.repeats))
    med = {j: {k: statistics.median(s[k] for s in samples[j]) for k in samples[j][0]} for j in JOBS}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=BENCH.parent).stdout.strip()  # fmt: skip
    lines = [f"transact bench, {date.today()}, commit {commit}, {a.runs} runs per round, "
             f"medians of {a.repeats} alternating rounds", ""]  # fmt: skip
    head = f"{'job':<10} {'trips/run':>9} {'cmds/run':>9} {'cpu us/run':>11} {'wall s':>7}"
    lines.append(head)
    for j in JOBS:
        m = med[j]
        lines.append(
            f"{j:<10} {m['trips']:>9.2f} {m['cmds']:>9.2f} {m['cpu_us']:>11.1f} {m['wall_s']:>7.2f}"
        )
    lines.append("")
    lines.append("per step (job - noop; cmds: commands Redis executed, Lua's included):")
    for j in ("transact", "plain"):
        n = med["noop"]
        trips, cmds = med[j]["trips"] - n["trips"], med[j]["cmds"] - n["cmds"]
        cpu = med[j]["cpu_us"] - n["cpu_us"]
        lines.append(f"  {j:<9} {trips:5.2f} round trips  {cmds:5.1f} cmds  {cpu:6.1f} us CPU")
    text = "\n".join(lines)
    print(text)
    (BENCH / "results" / f"{date.today()}-transact.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
