"""Runs: retry policy, timeouts, results, cancel, manual retry, listing, retention."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import cancel_flagged, node_of, wait_for

from stackshift_redis import (
    NonRetriableError,
    RetryAfterError,
    RunCancelled,
    RunContext,
    RunFailed,
    StackShift,
)
from stackshift_redis._core.scripts import StartRequest


async def test_retries_exhausted_fail_with_error_details(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("always", retries=2, backoff=0.01)
    async def always(ctx: RunContext) -> None:
        raise KeyError(f"attempt {ctx.attempt}")

    run = await app.start("always")
    running_worker(app)
    with pytest.raises(RunFailed) as caught:
        await run.result(timeout=10)
    info = await app.get_run(run.id)
    assert info is not None and info.status == "failed" and info.attempts == 3
    assert info.error is not None and info.error["type"] == "KeyError"
    assert "attempt 3" in info.error["message"] and "Traceback" in info.error["traceback"]
    assert caught.value.error["type"] == "KeyError"
    assert info.finished_at is not None and info.started_at is not None


async def test_non_retriable_fails_at_once(app: StackShift, running_worker: Any) -> None:
    @app.job("j", retries=5)
    async def j(ctx: RunContext) -> None:
        raise NonRetriableError("card declined")

    run = await app.start("j")
    running_worker(app)
    with pytest.raises(RunFailed, match="card declined"):
        await run.result(timeout=10)
    info = await app.get_run(run.id)
    assert info is not None and info.attempts == 1


async def test_retry_after_uses_its_delay(app: StackShift, running_worker: Any) -> None:
    stamps: list[float] = []

    @app.job("j", retries=2, backoff=100)
    async def j(ctx: RunContext) -> str:
        stamps.append(time.monotonic())
        if ctx.attempt == 1:
            raise RetryAfterError(0.5)
        return "done"

    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == "done"
    assert 0.45 <= stamps[1] - stamps[0] < 3


async def test_custom_backoff_callable(app: StackShift, running_worker: Any) -> None:
    seen: list[int] = []

    def backoff(attempt: int) -> float:
        seen.append(attempt)
        return 0.01

    @app.job("j", retries=2, backoff=backoff)
    async def j(ctx: RunContext) -> None:
        raise RuntimeError("x")

    run = await app.start("j")
    running_worker(app)
    with pytest.raises(RunFailed):
        await run.result(timeout=10)
    assert seen == [1, 2]


async def test_timeout_counts_as_failed_attempt(app: StackShift, running_worker: Any) -> None:
    @app.job("slow", retries=1, backoff=0.01, timeout=0.2)
    async def slow(ctx: RunContext) -> str:
        if ctx.attempt == 1:
            await asyncio.sleep(5)
        return "second"

    run = await app.start("slow")
    running_worker(app)
    assert await run.result(timeout=10) == "second"
    info = await app.get_run(run.id)
    assert info is not None and info.attempts == 2
    retrying = [e for e in info.timeline if e["type"] == "retrying"]
    assert "timeout" in retrying[0]["error"]


async def test_result_timeout_is_a_timeout_error(app: StackShift) -> None:
    app.job("j", lambda ctx: None)
    run = await app.start("j")
    with pytest.raises(TimeoutError):
        await run.result(timeout=0.2)


async def test_thousand_waiters_do_not_poll(app: StackShift, running_worker: Any) -> None:
    gate = asyncio.Event()

    @app.job("j")
    async def j(ctx: RunContext) -> int:
        await gate.wait()
        return int(ctx.payload)

    runs = await app.start_many("j", list(range(1000)))
    waits = [asyncio.create_task(r.result(timeout=30)) for r in runs]
    node = node_of(app)  # on a cluster: the node holding the namespace's slot
    # Once every waiter has registered (slow on a loaded machine; other tests' workers may
    # still be stopping), a whole second passes with almost no command: polling 1000
    # waiters would cost thousands every second, always.
    windows: list[int] = []
    for _ in range(15):
        before = (await app.redis.info("stats", **node))["total_commands_processed"]
        await asyncio.sleep(1.0)
        after = (await app.redis.info("stats", **node))["total_commands_processed"]
        windows.append(after - before)
        if windows[-1] < 20:
            break
    stats = {k: v["calls"] for k, v in (await app.redis.info("commandstats", **node)).items()}
    assert windows[-1] < 20, f"commands/s {windows} while 1000 results were awaited {stats}"
    running_worker(app, concurrency=100)
    gate.set()
    assert await asyncio.gather(*waits) == list(range(1000))


async def test_cancel_queued_and_scheduled(app: StackShift, running_worker: Any) -> None:
    ran: list[str] = []
    app.job("j", lambda ctx: ran.append(ctx.run_id))
    queued = await app.start("j")
    scheduled = await app.start("j", delay=0.3)
    assert await app.cancel(queued.id, reason="user asked") is True
    assert await app.cancel(scheduled.id) is True
    assert await app.redis.zcard(app._core.keys.delayed("default")) == 0
    running_worker(app)
    with pytest.raises(RunCancelled):
        await queued.result(timeout=5)
    await asyncio.sleep(0.6)
    assert ran == [] and await scheduled.status() == "cancelled"
    assert await app.cancel(queued.id) is False  # already final
    info = await app.get_run(queued.id)
    assert info is not None and info.timeline[-1]["reason"] == "user asked"


async def test_cancel_running_stops_at_next_step(app: StackShift, running_worker: Any) -> None:
    started, proceed = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    @app.job("long")
    async def long(ctx: RunContext) -> None:
        await ctx.step.run("one", lambda: done.append("one"))
        started.set()
        await proceed.wait()
        await ctx.step.run("two", lambda: done.append("two"))

    run = await app.start("long")
    worker = running_worker(app)
    await asyncio.wait_for(started.wait(), 10)
    assert await app.cancel(run.id) is True
    assert await run.status() == "running"
    # workers read cancel requests every poll interval: wait until this one has read it
    await wait_for(lambda: cancel_flagged(worker, run.id), 20)
    proceed.set()
    with pytest.raises(RunCancelled):
        await run.result(timeout=10)
    assert done == ["one"]


async def test_manual_retry_reuses_completed_steps(app: StackShift, running_worker: Any) -> None:
    calls: list[str] = []
    broken = {"yes": True}

    @app.job("j", retries=0)
    async def j(ctx: RunContext) -> str:
        await ctx.step.run("expensive", lambda: calls.append("expensive"))
        if broken["yes"]:
            raise RuntimeError("dependency down")
        return "recovered"

    run = await app.start("j")
    running_worker(app)
    with pytest.raises(RunFailed):
        await run.result(timeout=10)
    broken["yes"] = False
    again = await app.retry(run.id)
    assert again.id == run.id
    assert await again.result(timeout=10) == "recovered"
    assert calls == ["expensive"]
    info = await app.get_run(run.id)
    assert info is not None and info.error is None
    assert (info.attempts, info.executions) == (1, 2)  # a manual retry starts over at 1


async def test_list_runs_by_status_and_job(app: StackShift, running_worker: Any) -> None:
    app.job("ok", lambda ctx: 1, retries=0)

    def boom(ctx: RunContext) -> None:
        raise RuntimeError("x")

    app.job("bad", boom, retries=0)
    oks = await app.start_many("ok", [None] * 3)
    bads = await app.start_many("bad", [None] * 2)
    pending = await app.start("ok", delay=60)
    running_worker(app)
    for r in oks:
        await r.result(timeout=10)
    for r in bads:
        with pytest.raises(RunFailed):
            await r.result(timeout=10)
    failed = await app.list_runs(status="failed")
    assert {r.id for r in failed} == {r.id for r in bads}
    assert [r.id for r in await app.list_runs(status="completed", job="ok", limit=2)] == [
        oks[2].id,
        oks[1].id,
    ]
    assert [r.id for r in await app.list_runs(status="scheduled")] == [pending.id]
    assert len(await app.list_runs(job="ok")) == 4
    assert len(await app.list_runs(limit=3)) == 3


async def test_finished_runs_expire_and_queues_stay_empty(
    make_app: Any, running_worker: Any
) -> None:
    app: StackShift = make_app(retention=1)
    app.job("j", lambda ctx: "x")
    runs = await app.start_many("j", [None] * 20)
    running_worker(app)
    for r in runs:
        await r.result(timeout=10)

    async def tickets() -> int:
        return sum([await app.redis.xlen(k.stream("default")) for k in app._core.part_keys])

    await wait_for(lambda: tickets_gone(tickets))  # the stale tickets are trimmed
    for k in app._core.part_keys:
        assert await app.redis.exists(k.ready("default", "0"), k.ring("default")) == 0
    ttl = await app.redis.pttl(app._core.keys_of(runs[0].id).run(runs[0].id))
    assert 0 < ttl <= 1000
    await asyncio.sleep(1.2)
    assert await app.get_run(runs[0].id) is None
    # finishing trims expired index entries, amortized: on ids ending in "0" (1 in 16)
    # (with partitions: the id's own last character, not its partition's; the last one)
    fresh = app._core.new_run_id(app._core.partitions - 1)
    trimming_id = fresh[:23] + "0" + fresh[24:]
    request = StartRequest(job="j", queue="default", idem_ttl_ms=1000)
    scripts = app._core.scripts_of(trimming_id)
    await scripts.start(request, [(trimming_id, None, app.serializer.dumps(None))])
    await app.run(trimming_id).result(timeout=10)
    keys = app._core.keys_of(trimming_id)
    assert await app.redis.zcard(keys.idx_status("completed")) == 1


async def tickets_gone(count: Any) -> bool:
    return bool(await count() == 0)


async def test_stale_ready_entry_never_runs_twice(app: StackShift, running_worker: Any) -> None:
    ran: list[int] = []
    app.job("once", lambda ctx: ran.append(1))
    run = await app.start("once")
    running_worker(app)
    await run.result(timeout=10)
    k = app._core.keys_of(run.id)
    await app.redis.zadd(k.ready("default", "0"), {run.id: 1})  # a stale ready entry
    await app.redis.zadd(k.ring("default"), {"0": 1})
    await app.redis.xadd(k.stream("default"), {"t": "1"})  # and its ticket

    async def drained() -> bool:
        return not await app.redis.exists(k.ready("default", "0"))

    await wait_for(drained)
    await asyncio.sleep(0.3)
    assert ran == [1]


async def test_worker_without_the_job_fails_the_run_clearly(
    make_app: Any, running_worker: Any
) -> None:
    producer: StackShift = make_app()
    consumer: StackShift = make_app(namespace=producer.namespace)
    producer.job("only-here", lambda ctx: None, queue="shared")
    consumer.job("other", lambda ctx: None, queue="shared")
    run = await producer.start("only-here")
    running_worker(consumer, handback_limit=1.0)  # handed back until then (rolling deploys)
    with pytest.raises(RunFailed, match="not registered"):
        await run.result(timeout=15)


async def test_burst_worker_exits_when_idle(app: StackShift) -> None:
    app.job("j", lambda ctx: ctx.payload)
    runs = await app.start_many("j", list(range(50)))
    worker = app.worker(concurrency=8, poll_interval=0.05)
    await asyncio.wait_for(worker.run(burst=True), 20)
    for r in runs:
        assert await r.status() == "completed"


async def test_forced_stop_hands_cut_off_runs_back_at_once(app: StackShift) -> None:
    started = asyncio.Event()
    calls: list[int] = []

    @app.job("long")
    async def long(ctx: RunContext) -> str:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            started.set()
            await asyncio.sleep(60)
        return "finished elsewhere"

    run = await app.start("long")  # default visibility timeout: 30 s
    first = app.worker(poll_interval=0.05, block_ms=100)
    first_task = asyncio.create_task(first.run())
    await asyncio.wait_for(started.wait(), 10)
    await first.stop(force=True)
    await first_task
    assert await run.status() == "queued"  # handed back, not left to its lease
    second = app.worker(poll_interval=0.05, block_ms=100)
    second_task = asyncio.create_task(second.run())
    try:
        assert await run.result(timeout=20) == "finished elsewhere"
    finally:
        await second.stop(force=True)
        await second_task


async def test_finishing_trims_on_the_ids_own_last_character(make_app: Any) -> None:
    """The amortized trim (1 finish in 16) is chosen by the id's last character before a
    partition suffix (`-<p>`): not on every finish of partition 0, never on partition 3."""
    app: StackShift = make_app()
    app.job("j", lambda ctx: None, queue="t")
    part = app._core.partitions - 1
    scripts, keys = app._core.part_scripts(part), app._core.part_keys[part]
    request = StartRequest(job="j", queue="t", idem_ttl_ms=1000)

    async def finish(last: str) -> str:
        fresh = app._core.new_run_id(part)
        rid = fresh[:23] + last + fresh[24:]
        await scripts.start(request, [(rid, None, app.serializer.dumps(None))])
        reply = await scripts.take([("t", 30_000)], 1, max_deliveries=5, retention_ms=1000)
        [taken] = reply.taken
        call = scripts.complete_call(rid, taken.token, b"\xc0", 1000)
        assert await scripts.run_batch([call]) == [1]
        return rid

    first = await finish("1")
    await asyncio.sleep(1.1)  # past the retention
    second = await finish("1")  # not a trimming id: the expired entry stays
    assert await app.redis.zcard(keys.idx_status("completed")) == 2
    third = await finish("0")
    done = await app.redis.zrange(keys.idx_status("completed"), 0, -1)
    assert sorted(done) == sorted([second.encode(), third.encode()]) and first.encode() not in done
