"""A cancel that comes after the handler's last step (issue 23, defect 3; the contract in
API.md, "Cancel and a handler's return"): a handler that returns before its run observed
the cancel completes with its result, the timeline records the cancel as too late, and no
retry runs the code after the last step again."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from typing import Any

import pytest
from helpers import cancel_flagged, wait_for

from stackshift_redis import RunContext, StackShift

REASON = "changed my mind"


def _entries(info: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in info.timeline if e["type"] == kind]


@pytest.mark.parametrize("how", ["cancel", "cancel_runs"])
async def test_a_handler_that_returns_before_its_next_step_completes(
    app: StackShift, running_worker: Any, how: str
) -> None:
    release = asyncio.Event()
    seen: list[bool] = []

    async def job(ctx: RunContext) -> str:
        await ctx.step.run("last", lambda: 1)
        await release.wait()  # the cancel arrives here, after the last step
        seen.append(ctx.cancelled)
        return "done"

    app.job("late", job, queue="late")
    run = await app.start("late")
    worker = running_worker(app, queues=["late"])
    await wait_for(lambda: "last" in _steps(worker, run.id), timeout=10)
    if how == "cancel":
        assert await app.cancel(run.id, reason=REASON) is True
    else:
        assert await app.cancel_runs(job="late", status="running", reason=REASON) == 1
    await wait_for(lambda: cancel_flagged(worker, run.id), timeout=10)
    release.set()
    assert await run.result(timeout=10) == "done"
    assert seen == [True]  # the handler could have looked: it returned instead
    info = await app.get_run(run.id)
    assert info is not None and info.status == "completed" and info.error is None
    [requested] = _entries(info, "cancel_requested")
    [completed] = _entries(info, "completed")
    assert requested["reason"] == REASON and completed["cancel_too_late"] == REASON
    assert await app.retry_runs(job="late", status=["failed", "cancelled"]) == 0


def _steps(worker: Any, run_id: str) -> dict[str, Any]:
    held = worker.running.get(run_id)
    return held[0].steps if held is not None else {}


async def test_a_stale_attempt_of_a_run_cancelled_by_lease_recovery_is_not_completed(
    app: StackShift, running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker was paused past its lease with a cancel pending: the lease recovery
    cancelled the run (it observed the cancel). The attempt that returns later is told
    its lease is lost; it was reported completed while the run stayed cancelled."""
    app.queue("stale", visibility_timeout=1)
    release = asyncio.Event()

    async def job(ctx: RunContext) -> str:
        await ctx.step.run("last", lambda: 1)
        await release.wait()
        return "done"

    app.job("stale", job, queue="stale")
    run = await app.start("stale")
    worker = running_worker(app, queues=["stale"])
    await wait_for(lambda: "last" in _steps(worker, run.id), timeout=10)

    async def paused(queue: str, vt: float) -> None:  # no renewals: as a frozen process
        return None

    worker.upkeep.renew = paused
    assert await app.cancel(run.id, reason=REASON) is True
    await wait_for(lambda: _status(app, run.id, "cancelled"), timeout=10)  # recovered
    with caplog.at_level(logging.WARNING, logger="stackshift.worker"):
        release.set()
        await wait_for(lambda: run.id not in worker.running, timeout=10)
    lines = [r.getMessage() for r in caplog.records if run.id in r.getMessage()]
    assert any("lease lost" in m and "(completed) was recorded" in m for m in lines), lines
    info = await app.get_run(run.id)
    assert info is not None and info.status == "cancelled" and info.result is None


async def _status(app: StackShift, run_id: str, status: str) -> bool:
    return bool(await app.run(run_id).status() == status)


async def test_cancel_runs_racing_retry_runs(app: StackShift, running_worker: Any) -> None:
    """The campaign's race: bulk cancels and retries of the same runs while they execute.
    Whatever the interleaving, a run whose handler returned is completed (never cancelled),
    the code after its last step ran exactly once, and a cancel that came after the last
    step is in the completed entry as too late."""
    after: Counter[str] = Counter()

    async def job(ctx: RunContext) -> str:
        for i in range(3):
            await ctx.step.run(f"s{i}", lambda i=i: i)
        if ctx.attempt == 1 and random.random() < 0.3:
            raise RuntimeError("a failure for retry_runs to retry")
        after[ctx.run_id] += 1  # the code after the last step
        await asyncio.sleep(random.uniform(0.01, 0.08))  # cancels land here
        return "done"

    app.job("racer", job, queue="race", retries=0)
    runs = await app.start_many("racer", list(range(120)), queue_name="race")
    for _ in range(2):
        running_worker(app, queues=["race"], concurrency=16)
    deadline = asyncio.get_running_loop().time() + 6
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.gather(
            app.cancel_runs(job="racer", status=["running", "queued"], reason=REASON),
            app.retry_runs(job="racer", status=["failed", "cancelled"]),
        )
        await asyncio.sleep(random.uniform(0, 0.02))
    await wait_for(lambda: _all_final(app, runs), timeout=20)
    late = 0
    for run in runs:
        info = await app.get_run(run.id)
        assert info is not None
        if after[run.id]:  # the handler returned: completed, once
            assert info.status == "completed", (run.id, info.timeline[-4:])
            assert after[run.id] == 1, (run.id, info.timeline)
            last_start = max(i for i, e in enumerate(info.timeline) if e["type"] == "started")
            asked = [e for e in info.timeline[last_start:] if e["type"] == "cancel_requested"]
            completed = info.timeline[-1]
            assert completed["type"] == "completed"
            assert bool(asked) == ("cancel_too_late" in completed), (run.id, info.timeline)
            late += bool(asked)
        else:
            assert info.status != "completed", run.id
    assert late > 0  # the race was exercised: some cancels came after the last step


async def _all_final(app: StackShift, runs: list[Any]) -> bool:
    statuses = [await r.status() for r in runs]
    return all(s in ("completed", "failed", "cancelled") for s in statuses)
