"""Paging `list_runs` by cursor while runs change status, creation ranges, status lists,
`find_run`, and bad input that writes nothing."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from helpers import namespace_keys

from stackshift_redis import RunContext, RunPage, StackShift
from stackshift_redis._client.inspector import Inspector
from stackshift_redis._core.keys import Keys
from stackshift_redis.errors import InvalidArgumentError


async def _page_all(app: StackShift, limit: int, **filters: Any) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await app.list_runs(limit=limit, cursor=cursor, **filters)
        assert isinstance(page, RunPage) and isinstance(page, list)
        seen.extend(r.id for r in page)
        cursor = page.cursor
        if cursor is None:
            return seen
        await asyncio.sleep(0)  # let the worker and the cancels move runs between pages


async def test_paging_sees_every_run_once_while_statuses_change(
    app: StackShift, running_worker: Any
) -> None:
    async def work(ctx: RunContext) -> int:
        await asyncio.sleep(0.001)
        return 1

    app.job("churn", work, queue="paging")
    ids: list[str] = []
    for _ in range(6):
        ids += [r.id for r in await app.start_many("churn", [None] * 400)]
    running_worker(app, concurrency=16)  # completes runs while we page
    rng = random.Random(7)
    victims = rng.sample(ids, 300)

    async def cancel_some() -> None:
        for run_id in victims:
            await app.cancel(run_id)

    canceller = asyncio.create_task(cancel_some())
    every = await _page_all(app, 97)
    mixed = await _page_all(app, 150, status=["queued", "running", "completed", "cancelled"])
    await canceller
    for seen in (every, mixed):
        assert len(seen) == len(set(seen)), "a run was listed twice"
        assert set(seen) == set(ids), "a run was skipped"
        assert seen == sorted(seen, reverse=True), "not newest first"


async def test_status_filters_and_creation_range(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="pq")
    app.job("other", lambda ctx: None, queue="pq")
    early = [r.id for r in await app.start_many("j", [None] * 5)]
    await asyncio.sleep(0.02)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.02)
    late = [r.id for r in await app.start_many("j", [None] * 4)]
    later = await app.start("j", delay=60)
    other = await app.start("other")
    assert await app.cancel(early[0])

    queued = await app.list_runs(status="queued", job="j", limit=3)
    assert [r.id for r in queued] == late[::-1][:3] and queued.cursor == late[1]
    rest = await app.list_runs(status="queued", job="j", limit=3, cursor=queued.cursor)
    assert [r.id for r in rest] == [late[0], *early[4:2:-1]]
    both = await app.list_runs(status=["scheduled", "cancelled"], limit=10)
    assert [r.id for r in both] == [later.id, early[0]] and both.cursor is None
    assert [r.id for r in await app.list_runs(job="other")] == [other.id]
    recent = await app.list_runs(job="j", created_after=middle, limit=100)
    assert [r.id for r in recent] == [later.id, *late[::-1]]
    old = await app.list_runs(job="j", created_before=middle, limit=100)
    assert [r.id for r in old] == early[::-1]
    assert await app.list_runs(created_after=middle, created_before=middle) == []
    assert app.sync.list_runs(status="cancelled").cursor is None


async def test_find_run_by_idempotency_key(app: StackShift) -> None:
    app.job("charge", lambda ctx: None)
    run = await app.start("charge", {"n": 1}, idempotency_key="order:o_1")
    found = await app.find_run("charge", idempotency_key="order:o_1")
    assert found is not None and found.id == run.id and found.payload == {"n": 1}
    assert await app.find_run("charge", "order:nope") is None
    assert await app.find_run("refund", "order:o_1") is None
    assert app.sync.find_run("charge", "order:o_1") is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": "lost"},
        {"status": ["failed", "lost"]},
        {"status": []},
        {"limit": 0},
        {"limit": 100_000},
        {"cursor": "not a cursor"},
        {"job": "bad name!"},
        {"created_after": "yesterday"},
        {
            "created_after": datetime(2026, 2, 1, tzinfo=UTC),
            "created_before": datetime(2026, 1, 1, tzinfo=UTC),
        },
    ],
)
async def test_bad_filters_raise_and_write_nothing(app: StackShift, kwargs: Any) -> None:
    app.job("j", lambda ctx: None)
    await app.start("j")
    before = await namespace_keys(app)
    with pytest.raises(InvalidArgumentError):
        await app.list_runs(**kwargs)
    with pytest.raises(InvalidArgumentError):
        await app.find_run("bad name!", "k")
    assert await namespace_keys(app) == before


async def test_trimmed_finished_runs_leave_both_indexes(make_app: Any, running_worker: Any) -> None:
    app: StackShift = make_app(retention=1)
    app.job("short", lambda ctx: "x")
    old = await app.start_many("short", [None] * 30)
    running_worker(app)
    for r in old:
        await r.result(timeout=10)
    await asyncio.sleep(1.1)  # past retention: a later finish (1 in 16) trims old entries
    parts = app._core.part_keys

    async def members(index: Callable[[Keys], str]) -> set[bytes]:
        return {i for k in parts for i in await app.redis.zrange(index(k), 0, -1)}

    old_ids = {r.id.encode() for r in old}
    for _ in range(30):
        for r in await app.start_many("short", [None] * 16):
            await r.result(timeout=10)
        by_id = await members(lambda k: k.ord_status("completed"))
        if not by_id & old_ids:
            break
    else:
        raise AssertionError("expired runs were never trimmed from the id index")
    assert await members(lambda k: k.idx_status("completed")) == by_id
    assert await members(lambda k: k.ord_job_status("short", "completed")) == by_id
    listed = await app.list_runs(status="completed", limit=1000)
    assert {r.id.encode() for r in listed} == by_id


def test_run_ids_follow_the_clock_back_after_a_virtual_clock() -> None:
    """A TestEnv moves the clock days ahead; once it is restored, new run ids carry the real
    time again (not pinned to the virtual future), so creation ranges keep working."""
    from stackshift_redis._core import clock
    from stackshift_redis._core.records import new_run_id

    future_ns = time.time_ns() + 3 * 86_400 * 10**9
    previous = clock.use(lambda: future_ns)
    try:
        far = new_run_id()
    finally:
        clock.use(previous)
    near = new_run_id()
    now_ms = time.time_ns() // 10**6
    assert int(near[:11], 16) <= now_ms < int(far[:11], 16)


async def test_paging_on_fakeredis(fake_app: StackShift) -> None:
    """Users' own tests (fakeredis, TestEnv) page the same way."""
    fake_app.job("j", lambda ctx: None)
    ids = [r.id for r in await fake_app.start_many("j", [None] * 7)]
    first = await fake_app.list_runs(status=["queued", "failed"], limit=4)
    rest = await fake_app.list_runs(status=["queued", "failed"], limit=4, cursor=first.cursor)
    assert [r.id for r in first + rest] == ids[::-1] and rest.cursor is None
    found = await fake_app.find_run("j", "none")
    assert found is None


async def test_running_runs_are_paged_from_the_leases(app: StackShift) -> None:
    """Layout 4: running runs have no index; list_runs reads them from the leases of the
    queues runs were leased from, by job, by cursor and newest first like any status, and
    the totals count them there."""
    app.job("a", lambda ctx: None, queue="qa")
    app.job("b", lambda ctx: None, queue="qb")
    started = [await app.start("a", i) for i in range(5)] + [await app.start("b", 9)]
    ns = app._core
    for q in ("qa", "qb"):  # leased by a take, as a worker does (no attempt runs)
        taken = [
            await ns.part_scripts(p).take([(q, 60_000)], 10, max_deliveries=5, retention_ms=60_000)
            for p in range(ns.partitions)
        ]
        assert sum(len(t.taken) for t in taken) == (5 if q == "qa" else 1)
    await app.start("a", 7)  # stays queued
    ids_a = sorted((r.id for r in started[:5]), reverse=True)
    assert await _page_all(app, 2, status="running", job="a") == ids_a
    assert await _page_all(app, 4, status="running") == sorted(
        (r.id for r in started), reverse=True
    )
    page = await app.list_runs(status=["running", "queued"], job="a", limit=3)
    assert [r.status for r in page] == ["queued", "running", "running"]
    assert (await Inspector(app._core).totals())["running"] == 6
