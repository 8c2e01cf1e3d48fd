"""Flow-control benchmarks on one dedicated redis-server, each next to the same workload
without flow control (plain), from the same run:

    python -m bench.flow_bench [--backlog 10000] [--samples 100] [--seconds 60]

fairness: one key holds `backlog` queued runs (10 ms each); while a worker process
(concurrency 10) works through them, `samples` runs of other keys are started one by one,
50 ms apart. Their start delay (started - created, server clock) is reported as p50 / p99
/ max. With flow control the job has Concurrency(limit=8, key="k") (the noisy key leaves
worker slots free) or Concurrency(limit=1000, key="k") (it fills every worker slot: a quiet
run waits for one to free); keys take turns. Plain: one FIFO queue.

throttle: 10 x `seconds` runs are started at once for a job with Throttle(limit=10,
period=1); a worker process (concurrency 10) executes them. Reported: starts per whole
second (min / median / max), the most starts in any 1 s window, and the span. Plain: the
same runs without a throttle.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from bench.redis_server import RedisServer
from stackshift_redis import Concurrency, StackShift, Throttle

BENCH = Path(__file__).resolve().parent


def make_app(url: str, namespace: str, mode: str) -> StackShift:
    """The benchmark app; `mode` is fair-flow, fair-plain, thr-flow or thr-plain."""
    app = StackShift(url, namespace=namespace)
    opts: dict[str, Any] = {}
    if mode == "fair-flow":
        opts["concurrency"] = Concurrency(8, key="k")
    if mode == "fair-wide":
        opts["concurrency"] = Concurrency(1000, key="k")
    if mode == "thr-flow":
        opts["throttle"] = Throttle(10, period=1)

    @app.job("work", queue="b", **opts)
    async def work(ctx: Any) -> None:
        if mode.startswith("fair"):
            await asyncio.sleep(0.01)

    return app


def _worker(url: str, namespace: str, mode: str) -> None:
    async def go() -> None:
        app = make_app(url, namespace, mode)
        await app.worker(queues=["b"], concurrency=10, poll_interval=0.05).run()

    asyncio.run(go())


def _spawn(url: str, namespace: str, mode: str) -> Any:
    proc = multiprocessing.get_context("spawn").Process(
        target=_worker, args=(url, namespace, mode), daemon=True
    )
    proc.start()
    return proc


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def fairness(url: str, mode: str, backlog: int, samples: int) -> dict[str, float]:
    app = make_app(url, f"fair{uuid.uuid4().hex[:6]}", mode)
    await app.start_many("work", [{"k": "noisy", "i": i} for i in range(backlog)])
    proc = _spawn(url, app.namespace, mode)
    try:
        await asyncio.sleep(1.0)  # the worker is busy with the backlog
        quiet = []
        for i in range(samples):
            quiet.append(await app.start("work", {"k": f"quiet{i}"}))
            await asyncio.sleep(0.05)
        await asyncio.gather(*(r.result(timeout=120) for r in quiet))
        delays = []
        for r in quiet:
            info = await r.info()
            assert info is not None and info.started_at and info.created_at
            delays.append((info.started_at - info.created_at).total_seconds() * 1000)
        left = await app.redis.zcard(app._core.keys.ord_job_status("work", "queued"))
    finally:
        proc.terminate()
        proc.join(10)
        await app.close()
    return {
        "p50": _pct(delays, 0.5), "p99": _pct(delays, 0.99), "max": max(delays),
        "backlog_left": float(left),
    }  # fmt: skip


async def throttle(url: str, mode: str, seconds: int) -> dict[str, float]:
    app = make_app(url, f"thr{uuid.uuid4().hex[:6]}", mode)
    proc = _spawn(url, app.namespace, mode)
    try:
        await asyncio.sleep(1.0)
        runs = await app.start_many("work", [None] * (10 * seconds))
        await asyncio.gather(*(r.result(timeout=seconds * 2 + 30) for r in runs))
        starts = []
        for r in runs:
            info = await r.info()
            assert info is not None and info.started_at
            starts.append(info.started_at.timestamp())
    finally:
        proc.terminate()
        proc.join(10)
        await app.close()
    starts.sort()
    t0 = starts[0]
    per_second: dict[int, int] = {}
    for t in starts:
        per_second[int(t - t0)] = per_second.get(int(t - t0), 0) + 1
    whole = [per_second.get(s, 0) for s in range(int(starts[-1] - t0))] or [len(starts)]
    window, lo = 0, 0
    for hi, t in enumerate(starts):  # most starts in any 1 s window
        while t - starts[lo] >= 1.0:
            lo += 1
        window = max(window, hi - lo + 1)
    return {
        "min/s": min(whole), "median/s": statistics.median(whole), "max/s": max(whole),
        "max in 1s window": window, "span s": starts[-1] - t0, "runs": len(starts),
    }  # fmt: skip


def table(title: str, rows: dict[str, dict[str, float]]) -> list[str]:
    cols = list(next(iter(rows.values())))
    out = [title, f"{'':34}" + "".join(f"{c:>18}" for c in cols)]
    for name, vals in rows.items():
        out.append(f"{name:34}" + "".join(f"{vals[c]:>18.1f}" for c in cols))
    return out


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backlog", type=int, default=10_000)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--seconds", type=int, default=60)
    a = p.parse_args()
    lines = [f"flow control benchmarks, {date.today()}"]
    with RedisServer() as srv:
        fair = {
            "Concurrency(8, key): round robin": await fairness(
                srv.url, "fair-flow", a.backlog, a.samples
            ),
            "Concurrency(1000, key): round robin": await fairness(
                srv.url, "fair-wide", a.backlog, a.samples
            ),
            "plain (one FIFO queue)": await fairness(srv.url, "fair-plain", a.backlog, a.samples),
        }
        lines += table(
            f"fairness: start delay (ms) of {a.samples} quiet-key runs behind a "
            f"{a.backlog}-run backlog on one key (worker concurrency 10, 10 ms runs)",
            fair,
        )
        thr = {
            "Throttle(limit=10, period=1)": await throttle(srv.url, "thr-flow", a.seconds),
            "plain (no throttle)": await throttle(srv.url, "thr-plain", a.seconds),
        }
        lines += ["", *table(f"throttle: starts of {10 * a.seconds} runs started at once", thr)]
    text = "\n".join(lines)
    print(text)
    out = BENCH / "results" / f"{date.today()}-flow.txt"
    out.write_text(text + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
