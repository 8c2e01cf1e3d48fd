"""Starting runs: idempotency, bulk starts, delays, validation that writes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import namespace_keys, zcard_parts

from stackshift_redis import PayloadError, StackShift, UnknownJobError
from stackshift_redis._core.batching import TickBatcher
from stackshift_redis.errors import InvalidArgumentError


async def _keys(app: StackShift) -> list[bytes]:
    return await namespace_keys(app)  # SCAN of every node (KEYS reaches one cluster node)


async def test_start_creates_a_queued_run(app: StackShift) -> None:
    app.job("echo", lambda ctx: ctx.payload, queue="q1")
    run = await app.start("echo", {"a": 1})
    assert run.deduplicated is False
    assert await run.status() == "queued"
    info = await app.get_run(run.id)
    assert info is not None
    assert (info.job, info.queue, info.payload, info.attempts) == ("echo", "q1", {"a": 1}, 0)
    assert [e["type"] for e in info.timeline] == ["queued"]
    assert await app.redis.zcard(app._core.keys_of(run.id).ready("q1", "0")) == 1


async def test_run_ids_are_unique_and_sortable(app: StackShift) -> None:
    app.job("echo", lambda ctx: None)
    ids = [(await app.start("echo")).id for _ in range(20)]
    assert len(set(ids)) == 20
    assert ids == sorted(ids)


async def test_fifty_concurrent_duplicates_make_one_run(app: StackShift) -> None:
    app.job("charge", lambda ctx: None, queue="pay")
    runs = await asyncio.gather(
        *[app.start("charge", {"n": i}, idempotency_key="order-1") for i in range(50)]
    )
    assert len({r.id for r in runs}) == 1
    assert sum(not r.deduplicated for r in runs) == 1
    assert await zcard_parts(app, lambda k: k.ready("pay", "0")) == 1
    assert await zcard_parts(app, lambda k: k.ord_status("queued")) == 1


async def test_idempotency_is_scoped_by_job_and_expires(app: StackShift) -> None:
    app.job("a", lambda ctx: None)
    app.job("b", lambda ctx: None)
    r1 = await app.start("a", idempotency_key="k", idempotency_ttl=1)  # outlives a stall
    r2 = await app.start("b", idempotency_key="k")
    assert r1.id != r2.id
    ttl = await app.redis.pttl(app._core.keys_of(r1.id).idem("a", "k"))
    assert 0 < ttl <= 1000
    await asyncio.sleep(1.1)
    r3 = await app.start("a", idempotency_key="k")
    assert r3.id != r1.id and not r3.deduplicated


async def test_start_many_is_bulk_and_deduplicates(app: StackShift) -> None:
    app.job("img", lambda ctx: None, queue="media")
    runs = await app.start_many("img", [{"i": i} for i in range(1200)])
    assert len({r.id for r in runs}) == 1200
    assert await zcard_parts(app, lambda k: k.ready("media", "0")) == 1200
    keyed = await app.start_many(
        "img", [{"i": 1}, {"i": 2}, {"i": 3}], idempotency_keys=["x", "y", "x"]
    )
    assert keyed[0].id == keyed[2].id and keyed[2].deduplicated
    assert keyed[1].id != keyed[0].id


async def test_delay_and_run_at_schedule(app: StackShift) -> None:
    app.job("later", lambda ctx: None)
    r1 = await app.start("later", delay=timedelta(seconds=60))
    r2 = await app.start("later", run_at=datetime.now(UTC) + timedelta(hours=1))
    assert await r1.status() == "scheduled" and await r2.status() == "scheduled"
    s1 = await app.redis.zscore(app._core.keys_of(r1.id).delayed("default"), r1.id)
    s2 = await app.redis.zscore(app._core.keys_of(r2.id).delayed("default"), r2.id)
    assert s2 - s1 > 3_000_000
    assert await zcard_parts(app, lambda k: k.delayed("default")) == 2
    assert await zcard_parts(app, lambda k: k.ready("default", "0")) == 0


async def test_unknown_job_writes_nothing(app: StackShift) -> None:
    with pytest.raises(UnknownJobError):
        await app.start("nobody", {"a": 1})
    assert await _keys(app) == []


@pytest.mark.parametrize("payload", [object(), {1, 2}, b"x" * (1 << 20 + 1)])
async def test_bad_payload_writes_nothing(app: StackShift, payload: Any) -> None:
    app.job("j", lambda ctx: None)
    with pytest.raises(PayloadError):
        await app.start("j", payload)
    with pytest.raises(PayloadError):
        await app.start_many("j", [{"ok": 1}, payload])
    assert await _keys(app) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay": -1},
        {"delay": "soon"},
        {"queue_name": "bad queue"},
        {"idempotency_key": ""},
        {"delay": 1, "run_at": datetime.now(UTC)},
    ],
)
async def test_bad_arguments_write_nothing(app: StackShift, kwargs: dict[str, Any]) -> None:
    app.job("j", lambda ctx: None)
    with pytest.raises(InvalidArgumentError):
        await app.start("j", {}, **kwargs)
    assert await _keys(app) == []


async def test_job_of_another_service_starts_by_queue_or_published_map(
    make_app: Any, running_worker: Any
) -> None:
    worker_app: StackShift = make_app()
    worker_app.job("remote", lambda ctx: ctx.payload * 2, queue="svc")
    client: StackShift = make_app(namespace=worker_app.namespace)
    with pytest.raises(UnknownJobError):
        await client.start("remote", 1)
    by_queue = await client.start("remote", 2, queue_name="svc")
    running_worker(worker_app)
    assert await by_queue.result(timeout=10) == 4
    by_map = await client.start("remote", 5)  # the worker published job -> queue
    assert await by_map.result(timeout=10) == 10


async def test_namespaces_are_isolated(make_app: Any, running_worker: Any) -> None:
    a: StackShift = make_app()
    b: StackShift = make_app()
    a.job("j", lambda ctx: "from a")
    b.job("j", lambda ctx: "from b")
    ra = await a.start("j")
    assert await b.get_run(ra.id) is None
    assert await b.list_runs() == []
    running_worker(b)
    await asyncio.sleep(0.3)
    assert await ra.status() == "queued"  # b's worker never sees a's queue
    running_worker(a)
    assert await ra.result(timeout=10) == "from a"


async def test_a_lone_start_is_sent_at_once_and_concurrent_ones_are_batched() -> None:
    """TickBatcher(eager=True): nothing in flight, the submit is sent in the caller's task;
    submits made while it is in flight go together in one batch on the next tick."""
    calls: list[list[int]] = []
    gate = asyncio.Event()

    async def send(key: str, items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            await gate.wait()
        return [i * 10 for i in items]

    batcher: TickBatcher[str, int, int] = TickBatcher(send, eager=True)
    first = asyncio.ensure_future(batcher.submit("k", 1))
    await asyncio.sleep(0)
    assert calls == [[1]]  # sent at once
    rest = [asyncio.ensure_future(batcher.submit("k", i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    gate.set()
    assert [await first, *[await r for r in rest]] == [10, 20, 30, 40]
    assert calls == [[1], [2, 3, 4]]
    assert await batcher.submit("k", 5) == 50 and calls[-1] == [5]
