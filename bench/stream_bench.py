"""Run output streams: what a published message costs Redis, and how long it takes to
reach its readers.

1. Publish cost: one leased run, `publish` script calls one after another (no worker):
   Redis CPU (INFO used_cpu_sys + user) and script time (commandstats, EVALSHA usec) per
   message, and memory per message; below the cap, then at the cap (each message trims
   the oldest).
2. Latency: a worker process (bench/stream_jobs.py) publishes n messages at a steady
   rate, each carrying its publish time; readers measure publish -> yielded by
   `run.stream()` (wall clock, one machine): 1 reader; 100 readers in this process (they
   share one XREAD per run); 100 readers in 10 processes (10 blocking reads). p50, p99,
   max, and Redis CPU per message with the readers' reads included (less what Redis spends
   idle with the worker connected, measured first). A last row publishes as fast as one
   handler can (`ctx.publish` calls of one attempt go one at a time).

    python -m bench.stream_bench [--n 2000] [--rate 500] [--pad 64] [--out streams]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime
import logging
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

from bench.redis_server import RedisServer
from stackshift_redis import StackShift
from stackshift_redis._core.scripts import PublishRequest

ROOT = Path(__file__).resolve().parent.parent
NS = "streambench"


def _cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _stats(r: redis.Redis) -> dict[str, tuple[int, float]]:
    """command -> (calls, usec) from INFO commandstats."""
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"]))
            for k, v in r.info("commandstats").items()}  # fmt: skip


def _per_msg(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]],
             n: int) -> str:  # fmt: skip
    """Commands per message and their Redis time, by command (the busiest first)."""
    rows = []
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0.0))
        if calls - c0 > 0 and name != "info":
            rows.append((usec - u0, name, calls - c0))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {calls / n:.2f}x {usec / n:.1f} us" for usec, name, calls in rows[:4])


def _script_us(r: redis.Redis) -> float:
    stats = r.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def publish_cost(url: str, n: int, pad: int) -> list[str]:
    """Redis CPU, script time and memory per message, below and at the cap."""
    app = StackShift(url, namespace="pubcost")
    app.job("j", lambda ctx: None)
    r = redis.Redis.from_url(url)
    out = []
    try:
        run = await app.start("j")
        s = app._core.scripts
        taken = (await s.take([("default", 600_000)], 1, max_deliveries=5,
                              retention_ms=60_000)).taken[0]  # fmt: skip
        data = app.serializer.dumps({"i": 0, "t": time.time(), "pad": "x" * pad})
        await s.publish(PublishRequest(run.id, taken.token, 0, 1, "", data, n))  # loads it
        call = 1
        for phase in ("below the cap", "at the cap (trims one each)"):
            cpu0, us0, mem0 = _cpu(r), _script_us(r), r.info("memory")["used_memory"]
            t0 = time.perf_counter()
            for _ in range(n):
                call += 1
                await s.publish(PublishRequest(run.id, taken.token, call, 1, "", data, n))
            wall = time.perf_counter() - t0
            cpu, us = _cpu(r) - cpu0, _script_us(r) - us0
            mem = (r.info("memory")["used_memory"] - mem0) / n
            out.append(f"  {phase:<28} {1e6 * cpu / n:7.1f} us CPU  {us / n:6.1f} us script  "
                       f"{mem:7.0f} B/msg  {n / wall:7.0f} calls/s (one caller)")  # fmt: skip
        out.append(f"  stream length {r.xlen(app._core.keys.output(run.id))} (cap {n}); "
                   f"payload {len(data)} B")  # fmt: skip
    finally:
        r.close()
        await app.close()
    return out


async def _read(app: StackShift, run_id: str) -> list[float]:
    """Latencies (ms) of every message of the run as this reader gets them."""
    lat = []
    async for msg in app.run(run_id).stream():
        lat.append((time.time() - msg.data["t"]) * 1000)
    return lat


def _proc_reader(url: str, run_id: str, k: int) -> list[float]:
    """k readers in a process of their own; it notes itself in `attached` once connected."""

    async def main() -> list[float]:
        app = StackShift(url, namespace=NS)
        try:
            await app.run(run_id).status()  # imports done, connected
            await app.redis.incr(f"bench:{{{NS}}}:attached:{run_id}")
            parts = await asyncio.gather(*(_read(app, run_id) for _ in range(k)))
        finally:
            await app.close()
        return [x for p in parts for x in p]

    return asyncio.run(main())


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's run or readers did not get ready")
        await asyncio.sleep(0.05)


async def _waiting(app: StackShift, run_id: str) -> None:
    async def waits() -> bool:
        return await app.run(run_id).status() == "waiting"

    await _until(waits)


async def latency(url: str, n: int, rate: float, pad: int, local: int, procs: int,
                  per_proc: int, idle: float) -> str:  # fmt: skip
    """One scenario: `local` readers here plus `procs` x `per_proc` in other processes,
    all following the run before it publishes its first message."""
    app = StackShift(url, namespace=NS)
    r = redis.Redis.from_url(url)
    pool = None
    try:
        run = await app.start("ticker", {"n": n, "rate": rate, "pad": pad})
        assert run.id is not None
        await _waiting(app, run.id)
        tasks: list[Any] = [asyncio.ensure_future(_read(app, run.id)) for _ in range(local)]
        if procs:
            pool = concurrent.futures.ProcessPoolExecutor(
                procs, mp_context=multiprocessing.get_context("spawn")
            )
            loop = asyncio.get_running_loop()
            tasks += [loop.run_in_executor(pool, _proc_reader, url, run.id, per_proc)
                      for _ in range(procs)]  # fmt: skip

        async def attached() -> bool:
            return int(r.get(f"bench:{{{NS}}}:attached:{run.id}") or 0) >= procs

        await _until(attached)
        await asyncio.sleep(0.5)  # every reader waits on the run's stream
        cpu0, t0, stats0 = _cpu(r), time.monotonic(), _stats(r)
        await app.send_event("ticker.go", {"run": run.id})
        parts = await asyncio.gather(*tasks)
        cpu = _cpu(r) - cpu0 - idle * (time.monotonic() - t0)
        breakdown = _per_msg(stats0, _stats(r), n)
        lat = [x for p in parts for x in p]
        readers = local + procs * per_proc
        assert len(lat) == n * readers, (len(lat), n * readers)
        where = f"{local} here" if not procs else f"{procs} processes x {per_proc}"
        return (f"  {readers:3d} reader(s) ({where:<18}) p50 {_pct(lat, 0.5):6.2f} ms  "
                f"p99 {_pct(lat, 0.99):7.2f} ms  max {max(lat):7.1f} ms  "
                f"Redis CPU {1e6 * cpu / n:6.1f} us/msg\n"
                f"      per message: {breakdown}")  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown()
        r.close()
        await app.close()


async def burst(url: str, n: int, pad: int) -> str:
    """Publishes per second from one handler (its calls go one at a time)."""
    app = StackShift(url, namespace=NS)
    try:
        run = await app.start("ticker", {"n": n, "rate": 1e9, "pad": pad})
        assert run.id is not None
        await _waiting(app, run.id)
        await app.send_event("ticker.go", {"run": run.id})
        times = [m.data["t"] async for m in app.run(run.id).stream()]
        return f"  one handler publishing back to back: {n / (times[-1] - times[0]):7.0f} msg/s"
    finally:
        await app.close()


async def scenarios(url: str, a: argparse.Namespace, idle: float) -> list[str]:
    """The latency rows and the burst row (the worker process is running)."""
    lines = [f"latency publish -> reader ({a.rate:.0f} msg/s from one worker process; Redis "
             f"idle at {idle * 1e3:.1f} ms CPU/s, subtracted):"]  # fmt: skip
    for local, procs, per in ((1, 0, 0), (100, 0, 0), (0, 10, 10)):
        lines.append(await latency(url, a.n, a.rate, a.pad, local, procs, per, idle))
    lines.append(await burst(url, a.n * 2, a.pad))
    return lines


def main(a: argparse.Namespace) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    head = (f"bench/stream_bench.py, {datetime.date.today()}, {os.cpu_count()} cores "
            f"({platform.machine()}), load average {os.getloadavg()[0]:.1f}; "
            f"n={a.n} rate={a.rate:.0f}/s pad={a.pad} B")  # fmt: skip
    with RedisServer() as srv:
        r = redis.Redis.from_url(srv.url)
        lines = [f"{head}, Redis {r.info('server')['redis_version']}, commit {commit}"]
        lines.append("publish cost (one caller, sequential script calls, no readers):")
        lines += asyncio.run(publish_cost(srv.url, a.n * 5, a.pad))
        env = {**os.environ, "REDIS_URL": srv.url, "STACKSHIFT_NAMESPACE": NS}
        worker = subprocess.Popen(
            [sys.executable, "-m", "stackshift_redis.cli", "bench.stream_jobs:app"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not r.hget(f"ss:{{{NS}}}:jobs", "ticker"):
                time.sleep(0.1)
            cpu0 = _cpu(r)
            time.sleep(5)
            idle = (_cpu(r) - cpu0) / 5  # Redis CPU seconds per second, the worker idle
            lines += asyncio.run(scenarios(srv.url, a, idle))
        finally:
            worker.terminate()
            worker.wait(30)
            r.close()
    text = "\n".join(lines)
    print(text)
    if a.out:
        path = ROOT / "bench" / "results" / f"{datetime.date.today()}-{a.out}.txt"
        path.write_text(text + "\n")
        print(f"saved to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # publish_cost starts a run no worker consumes
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="messages per latency scenario")
    p.add_argument("--rate", type=float, default=500.0, help="messages per second")
    p.add_argument("--pad", type=int, default=64, help="bytes of padding per message")
    p.add_argument("--out", default="", help="also save to bench/results/<date>-<out>.txt")
    main(p.parse_args())
