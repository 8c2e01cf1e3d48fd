"""Runs that reach other partitions, end to end with a real worker (partitions): an invoked
child whose flow-control key puts it on another partition, its end settling the parent,
a cancel reaching it, and a transactional step whose state lives on another partition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from helpers import wait_for

from stackshift_redis import Concurrency, RunContext, RunFailed, StackShift, StateTx
from stackshift_redis._core.partitions import name_route, route
from stackshift_redis._core.routing import SEP


@pytest.fixture
def app(make_app: Callable[..., StackShift]) -> StackShift:
    return make_app(partitions=4)


def _key_elsewhere(job: str, part: int) -> str:
    """A flow-control key value that routes a run of `job` off partition `part`."""
    return next(f"k{i}" for i in range(100) if route(f"{job}{SEP}k{i}", 4) != part)


async def test_an_invoked_child_on_another_partition_settles_its_parent(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("child", concurrency=Concurrency(limit=2, key="account"))
    async def child(ctx: RunContext) -> str:
        p = ctx.payload
        if p.get("fail"):
            raise ValueError("no funds")
        return f"synced {p['account']}"

    @app.job("parent")
    async def parent(ctx: RunContext) -> Any:
        account = _key_elsewhere("child", app._core.part_of(ctx.run_id))
        payload = {"account": account, **ctx.payload}
        try:
            return await ctx.step.invoke("sync", job="child", payload=payload)
        except RunFailed as exc:
            return f"child failed: {exc}"

    running_worker(app)
    ok = await app.start("parent", {}, partition_key="a")
    bad = await app.start("parent", {"fail": True}, partition_key="b")
    assert (await ok.result(timeout=20)).startswith("synced k")
    assert "no funds" in await bad.result(timeout=20)
    info = await app.get_run(ok.id)
    assert info is not None
    kid = next(e["child"] for e in info.timeline if e["type"] == "child_started")
    assert app._core.part_of(kid) != app._core.part_of(ok.id)
    kid_info = await app.get_run(kid)
    assert kid_info is not None and kid_info.status == "completed"
    assert kid_info.parent_id == ok.id


async def test_cancelling_a_parent_cancels_its_child_on_another_partition(
    app: StackShift, running_worker: Any
) -> None:
    gate = asyncio.Event()

    @app.job("child", concurrency=Concurrency(limit=2, key="account"))
    async def child(ctx: RunContext) -> None:
        await ctx.step.sleep("later", 3600)  # waiting: a cancel ends it at once

    @app.job("parent")
    async def parent(ctx: RunContext) -> None:
        account = _key_elsewhere("child", app._core.part_of(ctx.run_id))
        gate.set()
        await ctx.step.invoke("sync", job="child", payload={"account": account})

    running_worker(app)
    run = await app.start("parent", partition_key="c")
    await asyncio.wait_for(gate.wait(), 10)

    async def child_id() -> str | None:
        info = await app.get_run(run.id)
        started = [e for e in info.timeline if e["type"] == "child_started"] if info else []
        return started[0]["child"] if started else None

    await wait_for(child_id, timeout=10)
    kid = await child_id()
    assert kid is not None and app._core.part_of(kid) != app._core.part_of(run.id)
    assert await app.cancel(run.id)

    async def kid_cancelled() -> bool:
        info = await app.get_run(kid)
        return info is not None and info.status == "cancelled"

    await wait_for(kid_cancelled, timeout=15)


async def test_a_commit_on_the_state_partition_is_recorded_on_the_run(
    app: StackShift, running_worker: Any
) -> None:
    async def move(tx: StateTx) -> int:
        n = await tx.get("{acct:7}:balance", 100)
        tx.set("{acct:7}:balance", n - 30)
        tx.set("{acct:7}:log", f"took 30 from {n}")
        return n - 30

    @app.job("pay")
    async def pay(ctx: RunContext) -> int:
        return await ctx.step.transact("debit", move)

    home = name_route("{acct:7}:x", 4)
    key = next(f"r{i}" for i in range(100) if route(f"r{i}", 4) != home)
    running_worker(app)
    run = await app.start("pay", partition_key=key)
    assert app._core.part_of(run.id) != home
    assert await run.result(timeout=20) == 70
    assert await app.state.get("{acct:7}:balance") == 70
    info = await app.get_run(run.id)
    assert info is not None
    done = [e for e in info.timeline if e["type"] == "step_completed"]
    assert len(done) == 1 and done[0]["step"] == "debit"
    again = await app.start("pay", partition_key=key)
    assert await again.result(timeout=20) == 40


async def test_state_of_one_commit_on_two_partitions_fails_the_step_with_one_line(
    app: StackShift, running_worker: Any
) -> None:
    names = ["a", "b", "c", "d", "e", "f", "g", "h"]
    first = names[0]
    other = next(n for n in names if name_route(n, 4) != name_route(first, 4))

    async def both(tx: StateTx) -> None:
        tx.set(first, 1)
        tx.set(other, 2)

    @app.job("j")
    async def j(ctx: RunContext) -> None:
        await ctx.step.transact("t", both)

    running_worker(app)
    run = await app.start("j")
    with pytest.raises(RunFailed, match="must share a partition"):
        await run.result(timeout=20)
    assert await app.state.get(first) is None


async def test_parents_parking_on_children_elsewhere_log_no_lost_lease(
    app: StackShift, running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A parent parks on its child (its lease ends with the park): a lease renewal that
    meets it meanwhile is not a lease lost to another worker (no warning, no cancel)."""
    app.queue("q", visibility_timeout=2)  # renewals every 0.67 s

    @app.job("child", queue="q", concurrency=Concurrency(4, key="account"))
    async def child(ctx: RunContext) -> int:
        return 1

    @app.job("parent", queue="q")
    async def parent(ctx: RunContext) -> int:
        return int(await ctx.step.invoke("c", job="child", payload=ctx.payload))

    caplog.set_level(logging.INFO, "stackshift.worker")
    runs = [
        await app.start("parent", {"account": f"a{i}"}, partition_key=f"c{i}", queue_name="q")
        for i in range(20)
    ]
    running_worker(app)
    assert [await r.result(timeout=20) for r in runs] == [1] * 20
    lost = [r.getMessage() for r in caplog.records if "lease lost" in r.getMessage()]
    assert not lost, lost
