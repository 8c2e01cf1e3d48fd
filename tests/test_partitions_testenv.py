"""TestEnv with partitions (issue 28): a partitioned app's jobs run in-process on fakeredis
as on Redis: runs on every partition, events reaching waiters on each, and a child invoked
onto another partition settling its parent through the outbox (the relay runs in TestEnv's
upkeep), all in virtual time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from stackshift_redis import Concurrency, RunContext, StackShift
from stackshift_redis._core.partitions import route
from stackshift_redis._core.routing import SEP
from stackshift_redis.testing import TestEnv

OFFLINE = "redis://127.0.0.1:1/0"  # never reached inside a TestEnv
P = 4


@pytest.fixture
def app() -> StackShift:
    return StackShift(redis_url=OFFLINE, namespace="shop", partitions=P)


@pytest.mark.timeout(30)
async def test_runs_on_every_partition_sleep_wait_and_invoke_across_partitions(
    app: StackShift,
) -> None:
    ran: list[str] = []

    @app.job("sync_account", concurrency=Concurrency(2, key="account"))
    async def sync_account(ctx: RunContext) -> str:
        ran.append(ctx.payload["account"])
        return f"synced {ctx.payload['account']}"

    @app.job("order")
    async def order(ctx: RunContext) -> dict[str, Any]:
        await ctx.step.sleep("cool-off", timedelta(hours=1))
        paid = await ctx.step.wait_for_event(
            "paid", event="payment", match={"order": ctx.payload["order"]},
            timeout=timedelta(days=1),
        )  # fmt: skip
        synced = await ctx.step.invoke("sync", "sync_account", {"account": ctx.payload["acct"]})
        return {"amount": paid.data["amount"], "synced": synced}

    async with TestEnv(app) as env:
        handles = []
        for i in range(8):
            here = route(f"c{i}", P)
            acct = next(  # its flow key puts the child on another partition
                a for j in range(100) if route(f"sync_account{SEP}{(a := f'a{i}-{j}')}", P) != here
            )
            handle = await app.start("order", {"order": i, "acct": acct}, partition_key=f"c{i}")
            handles.append((handle, acct))
        assert {app._core.part_of(h.id) for h, _ in handles} == set(range(P))
        await env.advance(timedelta(minutes=61))
        for i in range(8):
            await app.send_event("payment", {"order": i, "amount": 10 * i})
        for i, (handle, acct) in enumerate(handles):
            assert await handle.result(timeout=5) == {"amount": 10 * i, "synced": f"synced {acct}"}
            info = await app.get_run(handle.id)
            assert info is not None
            kid = next(e["child"] for e in info.timeline if e["type"] == "child_started")
            assert app._core.part_of(kid) != app._core.part_of(handle.id)
            assert [e["type"] for e in info.timeline].count("child_completed") == 1
        assert sorted(ran) == sorted(a for _, a in handles)  # each child ran once
