"""One row of bench/definitions_bench.py, run with PYTHONPATH = the tree under test (this
checkout or an older one): start `--n` runs and print Redis commands and CPU per run as JSON.

Modes: `plain` (a job without rules, registered in the caller), `rules` (Concurrency(2,
key="t") and priority 3, registered in the caller), `by-name` (the same job, the caller
registers nothing: on a tree with published definitions a worker's registration publishes
it first; on older trees the caller passes queue_name= and gets no rules).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from stackshift_redis import Concurrency, StackShift


def _cmds(stats: dict[str, Any]) -> int:
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if k.split("|")[0] not in ("info", "config", "ping", "hello", "client")
    )


async def _snapshot(app: StackShift) -> tuple[int, float]:
    stats = await app.redis.info("commandstats")
    cpu = await app.redis.info("cpu")
    return _cmds(stats), float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _define(app: StackShift, rules: bool) -> None:
    opts: dict[str, Any] = {"queue": "bq"}
    if rules:
        opts |= {"concurrency": [Concurrency(2, key="t")], "priority": 3}
    app.job("bj", lambda ctx: None, **opts)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--mode", choices=("plain", "rules", "by-name"), required=True)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--inflight", type=int, default=32)
    a = p.parse_args()
    ns = f"b{uuid.uuid4().hex[:10]}"
    caller = StackShift(a.redis_url, namespace=ns)
    kwargs: dict[str, Any] = {}
    if a.mode != "by-name":
        _define(caller, rules=a.mode == "rules")
    else:
        publisher = StackShift(a.redis_url, namespace=ns)
        _define(publisher, rules=True)
        try:
            from stackshift_redis._worker.registration import Registration

            await Registration(publisher._core, "bench", ["bq"]).setup()
            if not hasattr(Registration, "publish_definitions"):
                kwargs["queue_name"] = "bq"
        except Exception:
            kwargs["queue_name"] = "bq"
        await publisher.close()
    await caller.start("bj", {"t": "warm"}, **kwargs)  # connection, scripts, definitions
    cmds0, cpu0 = await _snapshot(caller)
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(a.inflight)

    async def one(i: int) -> None:
        async with sem:
            await caller.start("bj", {"t": f"k{i % 100}"}, **kwargs)

    await asyncio.gather(*(one(i) for i in range(a.n)))
    wall = time.perf_counter() - t0
    cmds1, cpu1 = await _snapshot(caller)
    await caller.close()
    print(json.dumps({
        "starts_per_s": a.n / wall,
        "redis_cpu_us": (cpu1 - cpu0) / a.n * 1e6,
        "commands_per_start": (cmds1 - cmds0 - 2) / a.n,  # minus the two INFO snapshots
    }))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
