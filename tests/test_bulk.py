"""cancel_runs / retry_runs: bounded batches over the status indexes, a re-check of each
run, safe to call again; bad input writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import cancel_flagged, namespace_keys, wait_for

from stackshift_redis import InvalidArgumentError, RunContext, StackShift
from stackshift_redis._client.control import BATCH
from stackshift_redis._core.scripts import BulkRequest, Scripts


@pytest.fixture
def bulk_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of runs each `bulk` script call changed, in call order."""
    calls: list[int] = []
    bulk = Scripts.bulk

    async def spy(self: Scripts, *args: Any, **kwargs: Any) -> Any:
        reply = await bulk(self, *args, **kwargs)
        calls.append(reply[0])
        return reply

    monkeypatch.setattr(Scripts, "bulk", spy)
    return calls


@pytest.fixture
async def dropped(app: StackShift) -> AsyncIterator[StackShift]:
    """`app`, whose namespace is deleted after the test (and after its workers stopped):
    these tests leave thousands of runs, and other tests measure the server's memory."""
    yield app
    keys = await namespace_keys(app)
    for lo in range(0, len(keys), 500):
        await app.redis.delete(*keys[lo : lo + 500])


async def _count(app: StackShift, job: str, status: str) -> int:
    return len(await app.list_runs(job=job, status=status, limit=10_000))


async def test_cancel_thousands_of_queued_runs_while_a_worker_takes_them(
    dropped: StackShift, app: StackShift, running_worker: Any, bulk_calls: list[int]
) -> None:
    n = 3000

    @app.job("slowish", retries=0)
    async def slowish(ctx: RunContext) -> int:
        await asyncio.sleep(0.005)
        return int(ctx.payload)

    app.job("other", lambda ctx: None)
    others = await app.start_many("other", list(range(50)))
    await app.start_many("slowish", list(range(n)))
    running_worker(app, queues=["default"], concurrency=8)
    await wait_for(lambda: _count(app, "slowish", "completed"), 10)
    cancelled = await app.cancel_runs(job="slowish", status="queued")
    assert len(bulk_calls) >= cancelled // BATCH and max(bulk_calls) <= BATCH
    await wait_for(
        lambda: _done(app, "slowish", n), 30
    )  # whatever was taken before the cancel reached it completes
    assert await _count(app, "slowish", "cancelled") == cancelled
    assert 0 < cancelled < n
    assert await app.cancel_runs(job="slowish", status="queued") == 0  # safe to call again
    for r in others:  # another job's runs are left alone
        assert await r.result(timeout=10) is None


async def _done(app: StackShift, job: str, n: int) -> bool:
    finished = await _count(app, job, "completed") + await _count(app, job, "cancelled")
    return finished == n


async def test_retry_thousands_of_failed_runs_while_a_worker_runs(
    dropped: StackShift, app: StackShift, running_worker: Any, bulk_calls: list[int]
) -> None:
    n = 2500
    broken = {"yes": True}

    @app.job("flaky", retries=0)
    async def flaky(ctx: RunContext) -> int:
        if broken["yes"]:
            raise RuntimeError("dependency down")
        return int(ctx.payload)

    await app.start_many("flaky", list(range(n)))
    running_worker(app, concurrency=32)
    await wait_for(lambda: _is(app, "flaky", "failed", n), 60)
    broken["yes"] = False
    assert await app.retry_runs(job="flaky", status="failed") == n
    assert len(bulk_calls) >= n // BATCH and max(bulk_calls) <= BATCH
    await wait_for(lambda: _is(app, "flaky", "completed", n), 60)
    assert await app.retry_runs(job="flaky") == 0


async def _is(app: StackShift, job: str, status: str, n: int) -> bool:
    return await _count(app, job, status) == n


async def test_time_range_status_lists_running_runs_and_retrying_cancelled(
    app: StackShift, running_worker: Any
) -> None:
    gate = asyncio.Event()
    steps: list[str] = []

    @app.job("hold", queue="held")
    async def hold(ctx: RunContext) -> None:
        await gate.wait()
        await ctx.step.run("after", steps.append, ctx.payload)

    app.job("j", lambda ctx: ctx.payload)
    first = await app.start_many("j", list(range(30)))
    first += await app.start_many("j", list(range(10)), delay=60)
    await asyncio.sleep(0.05)
    mid = datetime.now(UTC)
    await asyncio.sleep(0.05)
    second = await app.start_many("j", list(range(20)))
    counted = await app.cancel_runs(job="j", status=["queued", "scheduled"], created_before=mid)
    assert counted == 40
    assert {await r.status() for r in first} == {"cancelled"}
    assert {await r.status() for r in second} == {"queued"}
    again = await app.retry_runs(status="cancelled", created_after=mid - timedelta(minutes=1))
    assert again == 40 and {await r.status() for r in first} == {"queued"}

    held = await app.start_many("hold", ["a", "b"])
    worker = running_worker(app, queues=["held"])
    await wait_for(lambda: _is(app, "hold", "running", 2))
    assert await app.cancel_runs(status="running") == 2  # flagged: they stop at a step
    assert await app.cancel_runs(status="running") == 0  # flagged already

    # the worker has read the cancel notices (it polls them)
    await wait_for(lambda: all(cancel_flagged(worker, r.id) for r in held), 20)
    gate.set()
    for r in held:
        await wait_for(lambda r=r: _status_is(r, "cancelled"))
    assert steps == []


async def _status_is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


@pytest.mark.parametrize(
    ("call", "kwargs", "match"),
    [
        ("cancel_runs", {"status": "done"}, "unknown status"),
        ("cancel_runs", {"status": ["queued", "completed"]}, "'completed' is not one of"),
        ("cancel_runs", {"status": []}, "at least one"),
        ("retry_runs", {"status": "queued"}, "'queued' is not one of"),
        ("retry_runs", {"job": "bad name"}, "job name"),
        ("retry_runs", {"created_after": "yesterday"}, "created_after must be a datetime"),
        (
            "cancel_runs",
            {"created_after": datetime(2030, 1, 2), "created_before": datetime(2030, 1, 1)},
            "earlier",
        ),
        (
            "cancel_runs",
            {"created_after": datetime(2030, 1, 1), "created_before": datetime(2030, 1, 1)},
            "earlier",
        ),
    ],
)
async def test_bad_input_writes_nothing(
    app: StackShift, call: str, kwargs: dict[str, Any], match: str
) -> None:
    app.job("j", lambda ctx: None)
    await app.start_many("j", [1, 2, 3])
    before = await namespace_keys(app)
    queued = await app.redis.zrange(app._core.keys.ord_status("queued"), 0, -1)
    with pytest.raises(InvalidArgumentError, match=match):
        await getattr(app, call)(**kwargs)
    assert await namespace_keys(app) == before
    after = await app.redis.zrange(app._core.keys.ord_status("queued"), 0, -1)
    assert after == queued


async def test_a_pass_examines_each_entry_once_across_equal_scores(
    dropped: StackShift, app: StackShift
) -> None:
    """One start_many batch enters the index at one score: the cursor (score, id) still
    moves past entries a batch skipped (created outside the range) without a rank."""
    app.job("j", lambda ctx: None)
    runs = await app.start_many("j", list(range(450)))  # one script: one score
    await asyncio.sleep(0.02)
    cut = datetime.now(UTC)
    parts = app._core.part_keys
    scores = {s for k in parts for _, s in await app.redis.zrange(k.ord_status("queued"), 0, -1,
                                                                  withscores=True)}  # fmt: skip
    assert scores == {0}  # queued: the id-ordered index only
    assert await app.cancel_runs(created_after=cut) == 0
    assert await app.cancel_runs(created_before=cut) == 450
    ids: Sequence[str] = [r.id for r in runs]
    assert sum([await app.redis.zcard(k.idx_status("cancelled")) for k in parts]) == len(ids)


async def test_bulk_control_on_fakeredis(fake_app: StackShift) -> None:
    fake_app.job("j", lambda ctx: None)
    runs = await fake_app.start_many("j", list(range(450)))
    assert await fake_app.cancel_runs(job="j") == 450
    assert await fake_app.retry_runs(status="cancelled") == 450
    assert {await r.status() for r in runs} == {"queued"}
    assert await fake_app.pause_queue("default") and await fake_app.resume_queue("default")


async def test_the_cursor_moves_past_skipped_entries_of_one_score(app: StackShift) -> None:
    """300 index entries at one score (the id-ordered queued index), every other one of
    another job: each batch goes on after the last entry it examined (binary search among
    equal scores), whether that entry left the index (cancelled) or stayed (skipped)."""
    await app._core.layout.ensure()  # (a namespace's first write records its partitions)
    k, scripts = app._core.part_keys[0], app._core.part_scripts(0)
    tail = "-0" if app._core.partitions > 1 else ""  # ids of partition 0
    ids = [f"{i:024x}{tail}" for i in range(300)]
    for i, run_id in enumerate(ids):
        job = "a" if i % 2 == 0 else "b"
        await app.redis.hset(k.run(run_id), mapping={"status": "queued", "job": job,
                                                      "queue": "q", "created": 1000})  # fmt: skip
        await app.redis.zadd(k.ord_status("queued"), {run_id: 0})
    cursor: tuple[str, str] = ("", "")
    upto, changed, calls = "", 0, 0
    while True:
        n, nxt, upto = await scripts.bulk(
            BulkRequest(
                index=k.ord_status("queued"),
                action="cancel",
                status="queued",
                job="a",
                created_ms=(-1, -1),
                cursor=(*cursor, upto),
                limit=50,
                reason="bulk",
                retention_ms=60_000,
                budget_us=1_000_000,
                order="id",
            )
        )
        changed, calls = changed + n, calls + 1
        assert n <= 25
        if nxt is None:
            break
        cursor = nxt
    assert changed == 150 and calls == 7  # 6 full pages, then an empty one ends the pass
    statuses = [await app.redis.hget(k.run(r), "status") for r in ids]
    assert statuses == [b"cancelled", b"queued"] * 150


async def test_pause_and_resume_refuse_a_bad_queue_name(app: StackShift) -> None:
    before = await namespace_keys(app)
    for call in (app.pause_queue, app.resume_queue):
        with pytest.raises(InvalidArgumentError, match="queue name"):
            await call("no spaces")
    assert await app.resume_queue("never-paused") is False
    assert await namespace_keys(app) == before


async def test_retrying_cancelled_runs_together_resumes_a_parent_and_its_child(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("child")
    async def child(ctx: RunContext) -> int:
        evt = await ctx.step.wait_for_event("go", event="go", match={"id": ctx.payload})
        return int(evt.data["v"]) if evt else -1

    @app.job("parent")
    async def parent(ctx: RunContext) -> int:
        return int(await ctx.step.invoke("kid", job="child", payload=ctx.payload)) + 1

    running_worker(app)
    run = await app.start("parent", "p1")
    await wait_for(lambda: _is(app, "child", "waiting", 1))
    await wait_for(lambda: _is(app, "parent", "waiting", 1))
    assert await app.cancel(run.id)  # the child it waits for is cancelled too
    assert await _is(app, "child", "cancelled", 1)
    assert await app.retry_runs(status="cancelled") == 2
    await wait_for(lambda: _is(app, "child", "waiting", 1))
    await app.send_event("go", {"id": "p1", "v": 41})
    assert await run.result(timeout=10) == 42
