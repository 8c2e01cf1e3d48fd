"""Transactional steps (`ctx.step.transact`): writes, events, starts and the step's result
commit together once; reads are checked at commit (conflicts re-run fn)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from helpers import skip_with_partitions, wait_for

from stackshift_redis import (
    RunContext,
    StackShift,
    StateTx,
    SyncRunContext,
    TransactionConflictError,
)
from stackshift_redis._attempt import transact as tx_mod
from stackshift_redis._core.routing import SEP
from stackshift_redis.errors import StackShiftError


async def record(tx: StateTx, order: dict[str, Any]) -> int:
    count = await tx.get("orders:count", default=0)
    tx.set("orders:count", count + 1)
    tx.set(f"order:{order['id']}", order, ttl=timedelta(days=30))
    tx.delete(f"cart:{order['cart']}")
    tx.send_event("order.recorded", {"id": order["id"]})
    tx.start("send-receipt", {"order": order["id"]})
    return int(count) + 1


@skip_with_partitions("the state of one commit must share a partition")
async def test_commit_applies_writes_events_starts_and_result(
    app: StackShift, running_worker: Any
) -> None:
    receipts: list[Any] = []

    @app.job("record-order")
    async def record_order(ctx: RunContext) -> Any:
        return await ctx.step.transact("record-order", record, ctx.payload)

    @app.job("send-receipt")
    async def send_receipt(ctx: RunContext) -> None:
        receipts.append(ctx.payload)

    @app.job("waiter")
    async def waiter(ctx: RunContext) -> Any:
        ev = await ctx.step.wait_for_event("w", "order.recorded", match={"id": 7})
        return ev.data if ev else None

    from stackshift_redis.hooks import Hook, StepInput

    told: list[Any] = []

    class Told(Hook):
        def event_sent(self, name: str, resumed: list[str], started: list[str]) -> None:
            told.append((name, resumed, len(started)))

        async def step(self, inp: StepInput, proceed: Any) -> Any:
            told.append(inp.kind)
            return await proceed()

    app.add_hook(Told())
    await app.state.set("cart:c1", ["x"])
    w = await app.start("waiter")
    running_worker(app)
    await wait_for(lambda: _status_is(w, "waiting"), 20)  # the waiter parks
    run = await app.start("record-order", {"id": 7, "cart": "c1"})
    assert await run.result(timeout=10) == 1
    assert await w.result(timeout=10) == {"id": 7}
    assert await app.state.get("orders:count") == 1
    assert await app.state.get("order:7") == {"id": 7, "cart": "c1"}
    assert await app.state.get("cart:c1") is None
    ttl = await app.redis.pttl(app._core.keys.state("order:7"))
    assert 29 * 86_400_000 < ttl <= 30 * 86_400_000
    for _ in range(100):
        if receipts:
            break
        await asyncio.sleep(0.05)
    assert receipts == [{"order": 7}]
    info = await app.get_run(run.id)
    assert info is not None
    [entry] = [e for e in info.timeline if e.get("step") == "record-order"]
    tx = entry["tx"]
    assert tx["set"] == ["orders:count", "order:7"] and tx["deleted"] == ["cart:c1"]
    assert tx["events"] == [["order.recorded", f"{run.id}:record-order:1"]]
    assert len(tx["started"]) == 1
    assert ("order.recorded", [w.id], 0) in told and "transact" in told


async def _status_is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


async def test_a_conflict_runs_fn_again_with_fresh_reads(
    app: StackShift, running_worker: Any
) -> None:
    calls: list[int] = []

    async def bump(tx: StateTx) -> int:
        n = await tx.incr("n")
        calls.append(n)
        if len(calls) == 1:  # someone else writes the key between read and commit
            await app.state.set("n", 10)
        return n

    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        return await ctx.step.transact("bump", bump)

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == 11
    assert calls == [1, 11]
    assert await app.state.get("n") == 11


async def test_past_max_conflicts_the_step_fails(app: StackShift, running_worker: Any) -> None:
    async def always(tx: StateTx) -> None:
        await tx.get("k")
        await app.state.incr("k")  # changes what was read, every time

    @app.job("j", retries=0)
    async def j(ctx: RunContext) -> Any:
        try:
            await ctx.step.transact("s", always, max_conflicts=2)
        except TransactionConflictError as exc:
            return str(exc)
        return "no"

    run = await app.start("j")
    running_worker(app)
    assert "3 commits" in await run.result(timeout=10)
    assert await app.state.get("k") == 3
    assert issubclass(TransactionConflictError, StackShiftError)


async def test_sync_handler_transact(app: StackShift, running_worker: Any) -> None:
    def add(tx: Any, by: int) -> int:  # one braced part: one partition's state
        value: int = tx.incr("{acct}:c", by)
        tx.set("{acct}:seen", tx.get("{acct}:c"))
        return value

    @app.job("s")
    def s(ctx: SyncRunContext) -> Any:
        return [ctx.step.transact("add", add, 5), ctx.step.transact("add", add, 2)]

    run = await app.start("s")
    running_worker(app)
    assert await run.result(timeout=10) == [5, 7]
    assert await app.state.get("{acct}:seen") == 7


async def test_a_recorded_step_is_not_committed_again(app: StackShift, running_worker: Any) -> None:
    calls: list[int] = []

    async def once(tx: StateTx) -> int:
        calls.append(1)
        return await tx.incr("once")

    @app.job("j", retries=2, backoff=0.01)
    async def j(ctx: RunContext) -> Any:
        v = await ctx.step.transact("once", once)
        if ctx.attempt == 1:
            raise RuntimeError("after the commit")
        return v

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == 1
    assert calls == [1] and await app.state.get("once") == 1


async def test_a_resent_commit_applies_nothing_again(app: StackShift, running_worker: Any) -> None:
    async def fn(tx: StateTx) -> int:
        tx.send_event("e")
        return await tx.incr("r")

    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        return await ctx.step.transact("t", fn)

    scripts = app._core.part_scripts(app._core.part_of_name("r"))  # where it commits
    real = scripts.transact

    async def twice(request: Any, **kw: Any) -> Any:  # the first reply is lost: re-sent
        await real(request, **kw)
        return await real(request, **kw)

    scripts.transact = twice  # type: ignore[method-assign]
    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == 1
    assert await app.state.get("r") == 1
    info = await app.get_run(run.id)
    assert info is not None and [e["type"] for e in info.timeline].count("step_completed") == 1


async def test_bad_input_raises_and_writes_nothing(app: StackShift, running_worker: Any) -> None:
    async def bad(tx: StateTx) -> None:
        tx.set("a", 1)
        tx.set("", 2)

    @app.job("j", retries=0)
    async def j(ctx: RunContext) -> Any:
        with pytest.raises(StackShiftError):
            await ctx.step.transact("bad", bad)
        return await app.state.get("a")

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) is None
    assert tx_mod.FAULT is None


@skip_with_partitions("the state of one commit must share a partition")
async def test_runs_show_lists_what_a_commit_applied(
    app: StackShift, running_worker: Any, redis_url: str, is_cluster: bool
) -> None:
    from test_ops_cli import Cli

    @app.job("record-order")
    async def record_order(ctx: RunContext) -> Any:
        return await ctx.step.transact("record-order", record, ctx.payload)

    app.job("send-receipt", lambda ctx: None)
    run = await app.start("record-order", {"id": 3, "cart": "c9"})
    running_worker(app)
    assert await run.result(timeout=10) == 1
    info = await app.get_run(run.id)
    assert info is not None and info.steps["record-order"]["tx"]["deleted"] == ["cart:c9"]
    shown = await Cli(redis_url, app.namespace, is_cluster)("runs", "show", run.id)
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert "transactions" in text and "set      orders:count, order:3" in text
    assert "deleted  cart:c9" in text
    assert f"event    order.recorded (id {run.id}:record-order:1)" in text
    assert f"started  {info.steps['record-order']['tx']['started'][0]}" in text
    import httpx

    from stackshift_redis.dashboard import create_app

    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = (await client.get(f"/runs/{run.id}")).text
    assert "tx=" in page and "orders:count" in page and "cart:c9" in page  # the timeline


async def test_a_commit_without_the_lease_writes_nothing(
    app: StackShift, running_worker: Any
) -> None:
    from stackshift_redis._core.records import step_completed
    from stackshift_redis._core.scripts import TransactRequest
    from stackshift_redis.errors import LeaseLostError

    app.job("j", lambda ctx: None)
    run = await app.start("j")
    running_worker(app)
    await run.result(timeout=10)
    request = TransactRequest(
        run_id=run.id, token="1", step="late", record=step_completed(b"\xc0"),
        commit_token="t", reads=(), writes=(("k", "s", b"v", 0),), events=(), starts=(),
        summary="{}", retention_ms=0, dedupe_ms=1000, log_ms=0,
    )  # fmt: skip
    with pytest.raises(LeaseLostError):
        await app._core.scripts.transact(request)
    assert await app.state.get("k") is None


async def test_reads_see_own_writes_and_incr_keeps_the_ttl(
    app: StackShift, running_worker: Any
) -> None:
    async def fn(tx: StateTx) -> list[Any]:  # one braced part: one partition's state
        tx.set("{s}:a", {"x": 1})
        seen = [await tx.get("{s}:a"), await tx.get("{s}:missing", "d")]
        tx.delete("{s}:a")
        seen.append(await tx.get("{s}:a", "gone"))
        seen.append(await tx.incr("{s}:ttl", 2))
        return seen

    await app.state.set("{s}:ttl", 40, ttl=100)

    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        return await ctx.step.transact("s", fn)

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == [{"x": 1}, "d", "gone", 42]
    assert await app.state.get("{s}:ttl") == 42
    assert 0 < await app.redis.pttl(app._core.name_keys("{s}:ttl").state("{s}:ttl")) <= 100_000


async def test_starts_are_idempotent_like_start(app: StackShift, running_worker: Any) -> None:
    async def fn(tx: StateTx, i: int) -> None:
        tx.start("child", i, idempotency_key="once")
        tx.start("child", i + 10, delay=60)

    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        return await ctx.step.transact("s", fn, ctx.payload)

    app.job("child", lambda ctx: ctx.payload)
    # with partitions the parents go to the partition of the child's idempotency key
    # (routing.idempotency_partition), so the commit makes the run and its timeline lists
    # the deduplicated one (a start routed elsewhere is listed by the id it was given;
    # tests/test_partitions_tx_start.py)
    by_key = "child" + SEP + "once"
    runs = [await app.start("j", i, partition_key=by_key) for i in range(2)]
    running_worker(app)
    for r in runs:
        await r.result(timeout=10)
    infos = [await app.get_run(r.id) for r in runs]
    started = [i.steps["s"]["tx"]["started"] for i in infos if i is not None]
    assert started[0][0] == started[1][0]  # one run for the idempotency key
    assert len({started[0][1], started[1][1]}) == 2
    delayed = await app.get_run(started[0][1])
    assert delayed is not None and delayed.status.value == "scheduled"


async def test_starts_and_events_pin_their_runs_to_the_live_version(
    app: StackShift, running_worker: Any
) -> None:
    async def fn(tx: StateTx) -> None:
        tx.start("v2-child", {"by": "start"})
        tx.send_event("kick", {"n": 1})

    @app.job("parent")
    async def parent(ctx: RunContext) -> Any:
        return await ctx.step.transact("s", fn)

    @app.job("v2-child", version=2)
    async def v2_child(ctx: RunContext) -> int:
        return ctx.version

    @app.job("v2-triggered", version=2, on_event="kick")
    async def v2_triggered(ctx: RunContext) -> int:
        return ctx.version

    running_worker(app)
    run = await app.start("parent")
    await run.result(timeout=10)
    info = await app.get_run(run.id)
    assert info is not None
    child_id = info.steps["s"]["tx"]["started"][0]
    assert await app.run(child_id).result(timeout=10) == 2
    for _ in range(100):  # the event's run: started by the commit, pinned to version 2
        page = await app.list_runs(job="v2-triggered")
        if page and page[0].status.value == "completed":
            break
        await asyncio.sleep(0.05)
    assert [r.version for r in page] == [2] and page[0].result == 2
