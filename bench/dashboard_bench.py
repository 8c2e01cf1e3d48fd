"""Dashboard and `stackshift queues` cost with many retained runs.

Starts a throwaway redis-server, creates N runs (default 100,000: a part of them executed
by an in-process burst worker, the rest left queued), then for each dashboard page and for
the CLI's queue listing prints the Redis commands per request (INFO commandstats) and the
median render time over a few requests, plus the memory of the status indexes.

    .venv/bin/python -m bench.dashboard_bench [--runs 100000] [--executed 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import httpx

from bench.redis_server import RedisServer
from stackshift_redis import StackShift
from stackshift_redis._client.inspector import Inspector
from stackshift_redis.dashboard import create_app


async def commands(app: StackShift) -> int:
    stats = await app.redis.info("commandstats")
    skip = ("cmdstat_info", "cmdstat_config|resetstat", "cmdstat_config")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in skip)


async def measure(app: StackShift, call: Any, repeat: int) -> tuple[float, float]:
    """(median ms, Redis commands per call) of `call()`."""
    times: list[float] = []
    await app.redis.config_resetstat()
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    per_call = (await commands(app)) / repeat
    return statistics.median(times), per_call


async def main(runs: int, executed: int, repeat: int) -> None:
    with RedisServer() as server:
        app = StackShift(server.url, namespace="bench")
        app.queue("bench", concurrency=None)

        async def work(ctx: Any) -> int:
            await ctx.step.run("one", lambda: 1)
            return 1

        app.job("work", work, queue="bench")
        app.job("idle", lambda ctx: None, queue="bench")
        started = time.perf_counter()
        for lo in range(0, executed, 1000):
            await app.start_many("work", [{"i": i} for i in range(lo, min(lo + 1000, executed))])
        worker = app.worker(queues=["bench"], concurrency=64)
        await worker.run(burst=True)
        for lo in range(0, runs - executed, 1000):
            n = min(1000, runs - executed - lo)
            await app.start_many("idle", [{"i": i} for i in range(n)])
        setup = time.perf_counter() - started
        await app.send_event("bench.event", {"x": 1})
        k = app._core.keys
        sizes = {s: await app.redis.zcard(k.ord_status(s)) for s in ("queued", "completed")}
        mem_ord = await app.redis.memory_usage(k.ord_status("queued"))
        print(f"runs retained: {runs} ({sizes}); setup {setup:.1f}s")
        print(f"memory of the queued index (by id; none by time since layout 4): "
              f"{mem_ord / 1e6:.1f} MB")  # fmt: skip
        churn = app.worker(queues=["bench"], concurrency=64)  # runs change status meanwhile
        churning = asyncio.create_task(churn.run())
        t0 = time.perf_counter()
        seen: list[str] = []
        cursor = None
        while True:
            chunk = await app.list_runs(limit=500, cursor=cursor)
            seen += [r.id for r in chunk]
            cursor = chunk.cursor
            if cursor is None:
                break
        took = time.perf_counter() - t0
        await churn.stop()
        await churning
        done = await Inspector(app._core).totals()
        ok = len(seen) == len(set(seen)) == runs and seen == sorted(seen, reverse=True)
        print(f"paged all {len(seen)} runs (500 a page) in {took:.1f}s while a worker moved "
              f"{done['completed'] - executed} runs to completed: "
              f"{'no duplicates, no gaps, newest first' if ok else 'MISMATCH'}")  # fmt: skip
        page = await app.list_runs(limit=50)
        deep = page
        for _ in range(200):  # 10,000 runs deep
            deep = await app.list_runs(limit=50, cursor=deep.cursor)
        some_run = page[-1].id
        dash = create_app(app)
        insp = Inspector(app._core)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=dash), base_url="http://b"
        ) as client:

            def get(path: str) -> Any:
                async def call() -> None:
                    r = await client.get(path)
                    assert r.status_code in (200, 303), (path, r.status_code)

                return call

            cases = [
                ("GET /", get("/")),
                ("GET /runs", get("/runs")),
                ("GET /runs?status=completed", get("/runs?status=completed")),
                ("GET /runs?cursor=<10,000 deep>", get(f"/runs?cursor={deep.cursor}")),
                ("GET /runs?job=work&status=completed", get("/runs?job=work&status=completed")),
                ("GET /runs?q=<run id> (search)", get(f"/runs?q={some_run}")),
                ("GET /runs/{id}", get(f"/runs/{some_run}")),
                ("GET /events", get("/events")),
                ("GET /schedules", get("/schedules")),
                ("stackshift queues (Inspector.queues)", insp.queues),
                ("list_runs(limit=50)", lambda: app.list_runs(limit=50)),
            ]
            print(f"{'request':40} {'median ms':>10} {'redis cmds':>11}")
            for name, call in cases:
                ms, cmds = await measure(app, call, repeat)
                print(f"{name:40} {ms:10.2f} {cmds:11.1f}")
        await app.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--executed", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=10)
    a = p.parse_args()
    asyncio.run(main(a.runs, a.executed, a.repeat))
