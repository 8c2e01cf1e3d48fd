"""Bulk control cost: cancel_runs / retry_runs over 100,000 matching runs, in batches.

Prints the wall time of each bulk operation and, from SLOWLOG (threshold 0), the longest
and median script call: how long Redis is blocked at a time. One dedicated redis-server.

    python -m bench.bulk_bench [--runs 100000] [--batch 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.redis_server import RedisServer
from stackshift_redis import StackShift
from stackshift_redis._client import control


async def _evalsha(app: StackShift) -> tuple[int, int]:
    s = (await app.redis.info("commandstats")).get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(s["calls"]), int(s["usec"])


async def _measure(app: StackShift, label: str, op: Any) -> None:
    """Redis 7 logs the commands inside a script in SLOWLOG too: with a threshold of
    500 µs it logs the script calls over that, and the single commands that took that long
    (none should: those mean the server process was descheduled). Mean from commandstats."""
    await app.redis.slowlog_reset()
    calls0, usec0 = await _evalsha(app)
    t0 = time.perf_counter()
    count = await op()
    wall = time.perf_counter() - t0
    calls1, usec1 = await _evalsha(app)
    entries: list[Any] = await app.redis.slowlog_get(10_000)
    slow = [int(e["duration"]) for e in entries if e["command"].startswith(b"EVALSHA")]
    # a single ZADD or HSET over 500 µs means the server was descheduled (a busy machine)
    stalls = [int(e["duration"]) for e in entries if not e["command"].startswith(b"EVALSHA")]
    calls = calls1 - calls0
    mean = (usec1 - usec0) / max(calls, 1) / 1000
    slow.sort()
    stall = max(stalls, default=0) / 1000
    longest = slow[-1] / 1000 if slow else 0.0
    p99 = slow[int(len(slow) * 0.99)] / 1000 if slow else 0.0
    print(f"{label}: {count} runs in {wall:.2f} s, {calls} script calls, mean {mean:.2f} ms")
    print(
        f"    calls over 0.5 ms: {len(slow)}, their p99 {p99:.2f} ms, longest {longest:.2f} ms;"
        f" single commands over 0.5 ms (descheduled): {len(stalls)}, longest {stall:.2f} ms"
    )


async def main(runs: int, batch: int) -> None:
    control.BATCH = batch
    with RedisServer() as server:
        app = StackShift(server.url, namespace=f"bulk{uuid.uuid4().hex[:6]}")
        app.job("checkout", lambda ctx: None)
        await app.redis.config_set("slowlog-log-slower-than", 500)
        await app.redis.config_set("slowlog-max-len", 100_000)
        half = runs // 2
        await app.start_many("checkout", [{"i": i} for i in range(half)])
        await asyncio.sleep(0.01)
        mid = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await app.start_many("checkout", [{"i": i} for i in range(runs - half)])
        print(f"{runs} queued runs of one job, batch {batch}")
        await _measure(app, "cancel_runs(created_after=mid): half skipped",
                       lambda: app.cancel_runs(job="checkout", created_after=mid))  # fmt: skip
        await _measure(app, "cancel_runs(status='queued'): the rest",
                       lambda: app.cancel_runs(status="queued"))  # fmt: skip
        await _measure(app, "cancel_runs again (nothing matches)",
                       lambda: app.cancel_runs(job="checkout", status="queued"))  # fmt: skip
        await _measure(app, "retry_runs(status='cancelled'): all",
                       lambda: app.retry_runs(job="checkout", status="cancelled"))  # fmt: skip
        await app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=control.BATCH)
    a = parser.parse_args()
    asyncio.run(main(a.runs, a.batch))
