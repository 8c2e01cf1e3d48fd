"""Steps: memoized across retries, unique names in loops, parallel, sync handlers."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from stackshift_redis import NonRetriableError, RunContext, RunFailed, StackShift


async def test_completed_steps_are_not_rerun_on_retry(app: StackShift, running_worker: Any) -> None:
    calls: Counter[str] = Counter()

    async def charge(amount: int) -> dict[str, int]:
        calls["charge"] += 1
        return {"charged": amount}

    @app.job("order", retries=3, backoff=0.01)
    async def order(ctx: RunContext) -> Any:
        charged = await ctx.step.run("charge", charge, 42)
        shipped = await ctx.step.run("ship", lambda: calls.update(["ship"]) or "shipped")
        if ctx.attempt < 3:
            raise RuntimeError(f"flaky attempt {ctx.attempt}")
        return [charged, shipped]

    run = await app.start("order")
    running_worker(app)
    assert await run.result(timeout=10) == [{"charged": 42}, "shipped"]
    assert calls == {"charge": 1, "ship": 1}
    info = await app.get_run(run.id)
    assert info is not None and info.attempts == 3
    assert info.steps["charge"]["status"] == "completed"
    assert info.steps["charge"]["result"] == {"charged": 42}
    types = [e["type"] for e in info.timeline]
    assert types.count("step_completed") == 2 and types.count("retrying") == 2


async def test_failed_step_is_retried_and_recorded(app: StackShift, running_worker: Any) -> None:
    attempts: Counter[str] = Counter()

    def sometimes() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ValueError("first time fails")
        return "ok"

    @app.job("j", retries=2, backoff=0.01)
    async def j(ctx: RunContext) -> Any:
        return await ctx.step.run("flaky", sometimes)

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == "ok"
    info = await app.get_run(run.id)
    assert info is not None
    assert attempts["flaky"] == 2
    assert "step_failed" in [e["type"] for e in info.timeline]


async def test_repeated_names_get_suffixes(app: StackShift, running_worker: Any) -> None:
    @app.job("loop")
    async def loop(ctx: RunContext) -> list[int]:
        return [await ctx.step.run("send", lambda i=i: i * 10) for i in range(3)]

    run = await app.start("loop")
    running_worker(app)
    assert await run.result(timeout=10) == [0, 10, 20]
    info = await app.get_run(run.id)
    assert info is not None and set(info.steps) == {"send", "send#2", "send#3"}


async def test_parallel_steps_with_gather(app: StackShift, running_worker: Any) -> None:
    calls: Counter[str] = Counter()

    async def slow(name: str) -> str:
        calls[name] += 1
        await asyncio.sleep(0.2)
        return name.upper()

    @app.job("par", retries=1, backoff=0.01)
    async def par(ctx: RunContext) -> Any:
        a, b = await asyncio.gather(ctx.step.run("a", slow, "a"), ctx.step.run("b", slow, "b"))
        if ctx.attempt == 1:
            raise RuntimeError("retry once")
        return a + b

    run = await app.start("par")
    running_worker(app)
    assert await run.result(timeout=10) == "AB"
    assert calls == {"a": 1, "b": 1}


async def test_sync_handler_runs_in_thread_with_sync_steps(
    app: StackShift, running_worker: Any
) -> None:
    import threading

    seen: dict[str, Any] = {}

    def handler(ctx: RunContext) -> Any:
        seen["thread"] = threading.current_thread().name
        value = ctx.step.run("compute", lambda: ctx.payload["n"] + 1)
        ctx.progress(0.5)
        if ctx.attempt == 1:
            raise RuntimeError("again")
        return value

    app.job("sync", handler, retries=1, backoff=0.01)
    run = await app.start("sync", {"n": 1})
    running_worker(app)
    assert await run.result(timeout=10) == 2
    assert seen["thread"] != threading.current_thread().name
    info = await app.get_run(run.id)
    assert info is not None and info.progress == 0.5


async def test_unserializable_step_result_fails_the_run(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("bad", retries=3)
    async def bad(ctx: RunContext) -> Any:
        return await ctx.step.run("obj", object)

    run = await app.start("bad")
    running_worker(app)
    try:
        await run.result(timeout=10)
        raise AssertionError("expected RunFailed")
    except RunFailed as exc:
        assert exc.error["type"] == NonRetriableError.__name__
    info = await app.get_run(run.id)
    assert info is not None and info.attempts == 1
