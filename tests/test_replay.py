"""replay(run_id, from_step=None): a new run of the same job and payload, linked to the
original; with from_step the results recorded before that step are reused."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from helpers import namespace_keys

from stackshift_redis import InvalidArgumentError, RunContext, RunNotFoundError, StackShift


def _three_steps(app: StackShift, ran: Counter[str]) -> None:
    @app.job("order", retries=0)
    async def order(ctx: RunContext) -> list[Any]:
        async def step(name: str) -> str:
            ran[name] += 1
            return f"{name}{ran[name]}"

        a = await ctx.step.run("reserve", step, "reserve")
        b = await ctx.step.run("charge", step, "charge")
        await ctx.step.sleep("settle", 0)
        c = await ctx.step.run("ship", step, "ship")
        return [ctx.payload, a, b, c]


async def test_replay_from_a_middle_step_reruns_it_and_later_ones(
    app: StackShift, running_worker: Any
) -> None:
    ran: Counter[str] = Counter()
    _three_steps(app, ran)
    running_worker(app)
    run = await app.start("order", {"id": 7})
    assert await run.result(timeout=10) == [{"id": 7}, "reserve1", "charge1", "ship1"]

    again = await app.replay(run.id, from_step="charge")
    assert again.id != run.id
    assert await again.result(timeout=10) == [{"id": 7}, "reserve1", "charge2", "ship2"]
    assert ran == {"reserve": 1, "charge": 2, "ship": 2}
    info, orig = await app.get_run(again.id), await app.get_run(run.id)
    assert info is not None and orig is not None
    assert info.replay_of == run.id and orig.replay_of is None
    assert (info.job, info.queue, info.payload) == ("order", orig.queue, {"id": 7})
    assert info.timeline[0]["type"] == "replay_of" and info.timeline[0]["run"] == run.id
    assert info.timeline[0]["from_step"] == "charge"
    assert any(e["type"] == "replayed" and e["run"] == again.id for e in orig.timeline)

    fresh = await app.replay(run.id)  # no from_step: every step runs again
    assert await fresh.result(timeout=10) == [{"id": 7}, "reserve2", "charge3", "ship3"]
    late = await app.replay(run.id, from_step="ship")  # the sleep before it is reused too
    assert await late.result(timeout=10) == [{"id": 7}, "reserve1", "charge1", "ship4"]
    assert ran == {"reserve": 2, "charge": 3, "ship": 4}


async def test_replay_of_a_failed_run_from_the_step_that_broke(
    app: StackShift, running_worker: Any
) -> None:
    ran: Counter[str] = Counter()
    broken = {"yes": True}

    @app.job("pay", retries=0)
    async def pay(ctx: RunContext) -> str:
        async def step(name: str) -> str:
            ran[name] += 1
            if name == "charge" and broken["yes"]:
                raise RuntimeError("gateway down")
            return name

        await ctx.step.run("reserve", step, "reserve")
        return str(await ctx.step.run("charge", step, "charge"))

    running_worker(app)
    run = await app.start("pay")
    with pytest.raises(Exception, match="gateway down"):
        await run.result(timeout=10)
    broken["yes"] = False
    again = await app.replay(run.id, from_step="charge")
    assert await again.result(timeout=10) == "charge"
    assert ran == {"reserve": 1, "charge": 2}


async def test_replay_bad_input_writes_nothing(app: StackShift, running_worker: Any) -> None:
    ran: Counter[str] = Counter()
    _three_steps(app, ran)
    worker = running_worker(app)
    run = await app.start("order", 1)
    await run.result(timeout=10)
    await worker.stop()
    before = await namespace_keys(app)
    info = await app.get_run(run.id)
    with pytest.raises(InvalidArgumentError, match="from_step"):
        await app.replay(run.id, from_step="nope")
    with pytest.raises(InvalidArgumentError, match="from_step"):
        await app.replay(run.id, from_step="")
    with pytest.raises(RunNotFoundError):
        await app.replay("0000000000000000000000000")
    assert await namespace_keys(app) == before
    assert await app.get_run(run.id) == info
