"""Durable waits: sleep, wait_for_event (correlation, timeout, lookback), events that start
runs, invoke, and cancelling waiting runs. All on real Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import wait_for

from stackshift_redis import RunContext, RunFailed, StackShift
from stackshift_redis._core.scripts import StartRequest


async def test_sleep_frees_the_only_slot(app: StackShift, running_worker: Any) -> None:
    order: list[str] = []

    @app.job("sleeper")
    async def sleeper(ctx: RunContext) -> float:
        t0 = await ctx.step.run("t0", time.time)
        await ctx.step.sleep("nap", 3.0)  # still asleep when `quick` is done, even if loaded
        order.append("sleeper")
        return time.time() - t0

    app.job("quick", lambda ctx: order.append("quick"))
    sleeping = await app.start("sleeper")
    running_worker(app, concurrency=1)
    await wait_for(lambda: sleeping.status(), 5)
    await wait_for(lambda: _is(sleeping, "waiting"))
    quick = await app.start("quick")
    await quick.result(timeout=15)
    assert await sleeping.status() == "waiting"
    assert 2.95 <= await sleeping.result(timeout=20) < 15
    assert order == ["quick", "sleeper"]
    info = await app.get_run(sleeping.id)
    assert info is not None
    types = [e["type"] for e in info.timeline]
    assert "waiting" in types and "sleep_done" in types and "resumed" in types
    assert info.steps["nap"]["status"] == "completed"


async def _is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


async def test_sleep_until_in_the_past_does_not_suspend(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("j")
    async def j(ctx: RunContext) -> str:
        await ctx.step.sleep_until("past", datetime.now(UTC) - timedelta(seconds=5))
        return "went on"

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=15) == "went on"
    info = await app.get_run(run.id)
    assert info is not None and "waiting" not in [e["type"] for e in info.timeline]


async def test_event_resumes_only_the_matching_run(app: StackShift, running_worker: Any) -> None:
    @app.job("order")
    async def order(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event(
            "paid", event="payment.succeeded", match={"order.id": ctx.payload["id"]}
        )
        return evt.data["amount"] if evt else None

    runs = {i: await app.start("order", {"id": f"o{i}"}) for i in range(3)}
    running_worker(app)
    for r in runs.values():
        await wait_for(lambda r=r: _is(r, "waiting"))
    sent = await app.send_event("payment.succeeded", {"order": {"id": "o1"}, "amount": 7})
    assert sent.resumed == [runs[1].id] and sent.started == []
    assert await runs[1].result(timeout=15) == 7
    assert await runs[0].status() == "waiting" and await runs[2].status() == "waiting"
    other = await app.send_event("payment.succeeded", {"order": {"id": "o9"}})
    assert other.resumed == []
    await app.send_event("payment.succeeded", {"order": {"id": "o0"}, "amount": 1})
    assert await runs[0].result(timeout=15) == 1
    info = await app.get_run(runs[1].id)
    assert info is not None and "event_received" in [e["type"] for e in info.timeline]


async def test_wait_timeout_returns_none(app: StackShift, running_worker: Any) -> None:
    @app.job("j")
    async def j(ctx: RunContext) -> str:
        evt = await ctx.step.wait_for_event("w", event="never", match={"k": 1}, timeout=0.5)
        return "timed out" if evt is None else "got it"

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == "timed out"
    info = await app.get_run(run.id)
    assert info is not None and "timed_out" in [e["type"] for e in info.timeline]
    shapes = await app.redis.hgetall(app._core.keys.event_shapes("never"))
    assert shapes == {}  # the waiter registration is gone
    late = await app.send_event("never", {"k": 1})
    assert late.resumed == []


async def test_same_event_id_twice_resumes_once(app: StackShift, running_worker: Any) -> None:
    @app.job("j")
    async def j(ctx: RunContext) -> int:
        total = 0
        for i in range(2):
            evt = await ctx.step.wait_for_event(f"tick{i}", event="tick", match={})
            total += evt.data["n"] if evt else 0
        return total

    run = await app.start("j")
    running_worker(app)
    await wait_for(lambda: _is(run, "waiting"))
    first = await app.send_event("tick", {"n": 1}, id="evt-1")
    await wait_for(lambda: _is(run, "waiting"))
    again = await app.send_event("tick", {"n": 100}, id="evt-1")
    assert first.resumed == [run.id] and again.duplicate and again.resumed == []
    await asyncio.sleep(0.3)
    assert await run.status() == "waiting"
    await app.send_event("tick", {"n": 2}, id="evt-2")
    assert await run.result(timeout=15) == 3


async def test_lookback_catches_an_earlier_event(app: StackShift, running_worker: Any) -> None:
    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event(
            "w",
            event="ready",
            match={"id": ctx.payload},
            lookback=60 if ctx.payload == "a" else 0,
            timeout=1,
        )
        return evt.id if evt else None

    await app.send_event("ready", {"id": "a"}, id="early-a")
    await app.send_event("ready", {"id": "b"}, id="early-b")
    with_lookback = await app.start("j", "a")
    without = await app.start("j", "b")
    running_worker(app)
    assert await with_lookback.result(timeout=15) == "early-a"
    assert await without.result(timeout=15) is None
    info = await app.get_run(with_lookback.id)
    assert info is not None and "waiting" not in [e["type"] for e in info.timeline]


async def test_on_event_starts_runs_once_per_event_id(make_app: Any, running_worker: Any) -> None:
    app: StackShift = make_app()

    @app.job("welcome", on_event="user.signup", queue="mail")
    async def welcome(ctx: RunContext) -> str:
        assert ctx.event is not None and ctx.event.name == "user.signup"
        return f"hi {ctx.payload['name']} ({ctx.event.id})"

    running_worker(app)
    triggers = app._core.keys.triggers("user.signup")
    await wait_for(lambda: app.redis.hget(triggers, "welcome"), 10)  # the worker published it
    sender: StackShift = make_app(namespace=app.namespace)  # knows no jobs
    sent = await sender.send_event("user.signup", {"name": "ada"}, id="signup-1")
    assert len(sent.started) == 1
    assert await sender.run(sent.started[0]).result(timeout=15) == "hi ada (signup-1)"
    again = await sender.send_event("user.signup", {"name": "ada"}, id="signup-1")
    assert again.started == [] and again.duplicate


async def test_invoke_with_one_slot_does_not_deadlock(app: StackShift, running_worker: Any) -> None:
    app.job("double", lambda ctx: ctx.payload * 2)

    def explode(ctx: RunContext) -> None:
        raise ValueError("child broke")

    app.job("explode", explode, retries=0)
    child_calls: list[int] = []

    @app.job("parent", retries=1, backoff=0.01)
    async def parent(ctx: RunContext) -> Any:
        value = await ctx.step.invoke("child", job="double", payload=21)
        child_calls.append(value)
        try:
            await ctx.step.invoke("bad-child", job="explode")
        except RunFailed as exc:
            return [value, str(exc)]
        return [value, None]

    run = await app.start("parent")
    running_worker(app, concurrency=1)
    value, error = await run.result(timeout=10)
    assert value == 42 and "child broke" in error
    info = await app.get_run(run.id)
    assert info is not None
    types = [e["type"] for e in info.timeline]
    assert types.count("child_started") == 2 and "child_completed" in types
    children = await app.list_runs(job="double")
    assert len(children) == 1 and children[0].parent_id == run.id


async def test_invoke_timeout_fails_the_step(app: StackShift, running_worker: Any) -> None:
    @app.job("slow-child")
    async def slow_child(ctx: RunContext) -> None:
        await ctx.step.sleep("long", 30)

    @app.job("parent", retries=0)
    async def parent(ctx: RunContext) -> Any:
        return await ctx.step.invoke("c", job="slow-child", timeout=0.5)

    run = await app.start("parent")
    running_worker(app)
    with pytest.raises(RunFailed, match="timed out"):
        await run.result(timeout=10)


async def test_step_send_event_is_sent_once(app: StackShift, running_worker: Any) -> None:
    received: list[str] = []

    @app.job("listener", on_event="order.paid")
    async def listener(ctx: RunContext) -> None:
        received.append(ctx.payload["order"])

    @app.job("payer", retries=1, backoff=0.01)
    async def payer(ctx: RunContext) -> dict[str, Any]:
        sent = await ctx.step.send_event("notify", "order.paid", {"order": "o1"})
        if ctx.attempt == 1:
            raise RuntimeError("after sending")
        return sent

    run = await app.start("payer")
    running_worker(app)
    sent = await run.result(timeout=10)
    assert len(sent["started"]) == 1
    await app.run(sent["started"][0]).result(timeout=15)
    assert received == ["o1"]


async def test_cancel_waiting_run_removes_waiter_and_cascades_to_child(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("waiter")
    async def waiter(ctx: RunContext) -> None:
        await ctx.step.wait_for_event("w", event="go", match={"id": 1}, timeout=60)

    @app.job("parent")
    async def parent(ctx: RunContext) -> None:
        await ctx.step.invoke("c", job="waiter")

    run = await app.start("parent")
    running_worker(app)
    await wait_for(lambda: _is(run, "waiting"))
    child = await app.list_runs(job="waiter")
    await wait_for(lambda: app.list_runs(job="waiter", status="waiting"))
    child = await app.list_runs(job="waiter")
    assert await app.cancel(run.id, reason="stop") is True
    assert await run.status() == "cancelled"
    assert await app.run(child[0].id).status() == "cancelled"
    assert await app.redis.hgetall(app._core.keys.event_shapes("go")) == {}
    assert await app.redis.zcard(app._core.keys.delayed("default")) == 0
    assert (await app.send_event("go", {"id": 1})).resumed == []


async def test_sync_handler_can_sleep(app: StackShift, running_worker: Any) -> None:
    def handler(ctx: RunContext) -> int:
        n = ctx.step.run("n", lambda: 5)
        ctx.step.sleep("pause", 0.3)
        return int(n) + 1

    app.job("sync-sleeper", handler)
    run = await app.start("sync-sleeper")
    running_worker(app)
    assert await run.result(timeout=10) == 6


async def test_waiting_run_survives_its_worker_dying(app: StackShift) -> None:
    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        first = await ctx.step.run("first", lambda: "kept")
        evt = await ctx.step.wait_for_event("w", event="resume-me", match={"id": 7})
        return [first, evt.data["v"] if evt else None]

    run = await app.start("j")
    doomed = app.worker(poll_interval=0.05, block_ms=100)
    task = asyncio.create_task(doomed.run())
    await wait_for(lambda: _is(run, "waiting"))
    task.cancel()  # the worker dies without any shutdown
    with pytest.raises(asyncio.CancelledError):
        await task
    survivor = app.worker(poll_interval=0.05, block_ms=100)
    survivor_task = asyncio.create_task(survivor.run())
    try:
        sent = await app.send_event("resume-me", {"id": 7, "v": "late"})
        assert sent.resumed == [run.id]
        assert await run.result(timeout=10) == ["kept", "late"]
    finally:
        await survivor.stop(force=True)
        await survivor_task


async def test_invoke_of_an_already_finished_child_returns_at_once(
    app: StackShift, running_worker: Any
) -> None:
    from stackshift_redis._core.routing import idempotency_partition

    app.job("double", lambda ctx: ctx.payload * 2)

    @app.job("parent")
    async def parent(ctx: RunContext) -> Any:
        return await ctx.step.invoke("child", job="double", payload=21)

    ns = app._core
    parts = range(ns.partitions)  # the child (by its idempotency key) and the parent share one
    parent_id = next(
        pid
        for pid in (ns.new_run_id(p) for _ in range(100) for p in parts)
        if idempotency_partition("double", f"invoke:{pid}:child", ns.partitions) == ns.part_of(pid)
    )
    child = await app.start("double", 21, idempotency_key=f"invoke:{parent_id}:child")
    await app.worker(poll_interval=0.05, block_ms=100).run(burst=True)
    assert await child.result(timeout=15) == 42
    payload = app.serializer.dumps(None)
    request = StartRequest(job="parent", queue="default", idem_ttl_ms=1000)
    await ns.scripts_of(parent_id).start(request, [(parent_id, None, payload)])
    running_worker(app)
    assert await app.run(parent_id).result(timeout=10) == 42
    info = await app.get_run(parent_id)
    assert info is not None and "waiting" not in [e["type"] for e in info.timeline]
    assert len(await app.list_runs(job="double")) == 1  # no second child
