"""Steps in production-like use: a blocking plain function in an async handler, the
loop-lag watchdog, poison messages (issue 11, item 2) and more step errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers import RedisServer, skip_on_cluster, spawn_worker, wait_for

from stackshift_redis import RunContext, StackShift

TARGET = "tests.apps.deploy_jobs:app"


@skip_on_cluster  # the job counts its side effect through a plain standalone client
async def test_a_blocking_step_in_an_async_handler_keeps_its_lease(
    app: StackShift, redis_server: RedisServer, procs: list[Any]
) -> None:
    for _ in range(2):  # a second worker would take the run if the lease lapsed
        procs.append(spawn_worker(redis_server.url, app.namespace, "-q", "blockq",
                                  target=TARGET))  # fmt: skip
    run = await app.start("blocking", 42, queue_name="blockq")
    assert await run.result(timeout=30) == 42
    assert await app.redis.get(f"obs:{{{app.namespace}}}:charges") == b"1"
    info = await app.get_run(run.id)
    assert info is not None and not any(e["type"] == "recovered" for e in info.timeline)


async def test_a_plain_step_function_runs_off_the_loop(
    app: StackShift, running_worker: Any
) -> None:
    seen: dict[str, Any] = {}

    def blocking() -> str:
        try:
            asyncio.get_running_loop()
            seen["on_loop"] = True
        except RuntimeError:
            seen["on_loop"] = False
        time.sleep(1.0)  # long enough for 5 ticks of a loaded loop
        return "done"

    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        t = asyncio.create_task(ticker())
        value = await ctx.step.run("b", blocking)
        later = await ctx.step.run("c", lambda: asyncio.sleep(0, "async"))  # awaitable kept
        t.cancel()
        return [value, later, ticks]

    running_worker(app)
    value, later, ticks = await (await app.start("j")).result(timeout=10)
    assert (value, later, seen["on_loop"]) == ("done", "async", False)
    assert ticks >= 5  # the loop kept running while the step blocked its thread


async def test_the_watchdog_names_the_run_when_the_loop_is_blocked(
    app: StackShift, running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    @app.job("hog")
    async def hog(ctx: RunContext) -> None:
        time.sleep(0.8)  # noqa: ASYNC251 - the bug being detected

    caplog.set_level(logging.WARNING, "stackshift.worker")
    running_worker(app, lag_threshold=0.3)
    run = await app.start("hog")
    await run.result(timeout=10)
    await wait_for(lambda: "event loop blocked" in caplog.text, 20)
    line = next(r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage())
    assert run.id in line and "(hog)" in line


async def test_a_poison_failure_says_that_leases_expired(
    make_app: Callable[..., StackShift],
) -> None:
    app = make_app(max_deliveries=2)
    app.job("p", lambda ctx: None)
    run = await app.start("p")
    scripts = app._core.scripts_of(run.id)
    for _ in range(2):  # taken, its lease expires while "running", recovered
        reply = await scripts.take([("default", 1)], 1, max_deliveries=2,
                                   retention_ms=60_000)  # fmt: skip
        assert [t.run_id for t in reply.taken] == [run.id]
        await asyncio.sleep(0.01)
        assert await scripts.reclaim("default", 60_000) == [run.id]
    reply = await scripts.take([("default", 1)], 1, max_deliveries=2, retention_ms=60_000)
    assert reply.dropped == [(run.id, "default", "poison")]
    info = await app.get_run(run.id)
    assert info is not None and info.error is not None
    assert info.error["type"] == "PoisonRunError"
    assert "lease expired 2 times while an attempt was still running" in info.error["message"]
