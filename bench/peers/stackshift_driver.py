"""stackshift-redis driver (main environment), written against shared/API.md:
`app.start(job, payload)`, bulk = `app.start_many(job, payloads)`, worker =
`app.worker(queues=["bench"])` at its default concurrency, stopped on SIGTERM.

Extra flag `--job noop|steps3`: steps3 runs three memoized steps (`ctx.step.run`).
Extra flag `--dispatch plain|prio5|groups1000` (bench/dispatch_spike.py), through the
public flow-control API: `prio5` starts runs with `priority=` over 5 levels; `groups1000`
declares the job with `concurrency=Concurrency(limit=10, key="g")` and spreads runs over
1000 key values (flow control configured but not binding)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from _common import Peer, main, mark

from stackshift_redis import Concurrency, StackShift

QUEUE = "bench"
NAMESPACE = "bench"


def _one(x: int) -> int:
    return x + 1


def _observe(app: StackShift) -> None:
    """STACKSHIFT_BENCH_HOOKS (bench/observability_bench.py): `tracing` = an OpenTelemetry
    SDK provider that records spans and exports none; `tracing-api` = the API's no-op
    tracer; `metrics` = prometheus-client counters and histograms; unset = no hook."""
    mode = os.environ.get("STACKSHIFT_BENCH_HOOKS", "")
    if mode in ("tracing", "tracing-api"):
        from stackshift_redis.tracing import instrument

        provider = None
        if mode == "tracing":
            from opentelemetry.sdk.trace import TracerProvider

            provider = TracerProvider()
        instrument(app, tracer_provider=provider)
    elif mode == "metrics":
        from prometheus_client import CollectorRegistry

        from stackshift_redis.metrics import MetricsHook

        app.add_hook(MetricsHook(CollectorRegistry()))


def make_app(url: str) -> StackShift:
    app = StackShift(redis_url=url, namespace=NAMESPACE)
    _observe(app)

    keyed = {"concurrency": Concurrency(10, key="g")} if DISPATCH == "groups1000" else {}

    @app.job("noop", queue=QUEUE, **keyed)
    async def noop(ctx: Any) -> None:
        mark(b"S")
        mark(b"E")

    @app.job("steps3", queue=QUEUE)
    async def steps3(ctx: Any) -> int:
        mark(b"S")
        a = await ctx.step.run("a", _one, 0)
        b = await ctx.step.run("b", _one, a)
        c = await ctx.step.run("c", _one, b)
        mark(b"E")
        return int(c)

    return app


def job_name() -> str:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--job", choices=["noop", "steps3"], default="noop")
    return str(p.parse_known_args()[0].job)


def dispatch_mode() -> str:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--dispatch", choices=["plain", "prio5", "groups1000"], default="plain")
    return str(p.parse_known_args()[0].dispatch)


def _payload(i: int) -> dict[str, Any]:
    if DISPATCH == "groups1000":
        return {"i": i, "g": str(i % 1000)}
    return {"i": i}


def _priority(i: int) -> int:
    return i % 5 * 10 - 20 if DISPATCH == "prio5" else 0


async def connect(url: str) -> StackShift:
    return make_app(url)


async def enqueue(app: StackShift, i: int) -> None:
    await app.start(JOB, _payload(i), priority=_priority(i))


async def bulk(app: StackShift, items: list[int]) -> None:
    by_priority: dict[int, list[int]] = {}
    for i in items:
        by_priority.setdefault(_priority(i), []).append(i)
    await asyncio.gather(*[
        app.start_many(JOB, [_payload(i) for i in group], priority=prio)
        for prio, group in by_priority.items()
    ])  # fmt: skip


async def close(app: StackShift) -> None:
    closer = getattr(app, "close", None)  # not in API.md; present in the implementation
    if closer is not None:
        await closer()


async def _work(url: str) -> None:
    app = make_app(url)
    worker = app.worker(queues=[QUEUE])
    task = asyncio.create_task(worker.run(burst=False))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop()))
    await task
    await close(app)


def run_worker(url: str) -> None:
    asyncio.run(_work(url))


def lib_version() -> str:
    try:
        return version("stackshift-redis")
    except PackageNotFoundError:
        import stackshift_redis

        return str(getattr(stackshift_redis, "__version__", "source"))


JOB = job_name()
DISPATCH = dispatch_mode()

if __name__ == "__main__":
    name = "stackshift" if JOB == "noop" else f"stackshift[{JOB}]"
    main(Peer(name, lib_version(), connect, enqueue, bulk, close, run_worker))
