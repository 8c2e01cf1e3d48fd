"""Conversions of an older layout (stackshift_redis/_core/migrate_keys.py).

`escape_key_names` (issue 23, defect 1): names with ':' are escaped in key names now; the
keys a namespace of layout 1 (6707af1) holds for such names are renamed. An old layout is
made here from data this checkout wrote, by giving every key the name 6707af1 gave it
(every part as is), then converted back, in small batches, after a crash halfway and a
second time; the runs then finish."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import namespace_keys, wait_for

from stackshift_redis import Concurrency, RunContext, Singleton, StackShift, Throttle
from stackshift_redis._core import layout, migrations
from stackshift_redis._core.keys import SHAPES, parse
from stackshift_redis._core.migrate_indexes import drop_untimed_indexes
from stackshift_redis._core.migrate_keys import escape_key_names

# conversions of layout 1, which has one tag (one partition)
pytestmark = pytest.mark.one_partition

FIELDS = ("sgl", "idem_key")  # run hash fields that name a key


def _old_name(prefix: str, key: str) -> str:
    """The name 6707af1 gave a key: every part as is."""
    reading = parse(prefix, key)
    if reading is None:
        return key
    shape, args = reading
    it = iter(args)
    return prefix + ":".join(next(it) if p.startswith("{") else p for p in SHAPES[shape])


async def _downgrade(app: StackShift) -> dict[str, str]:
    """Give every key of the namespace its layout-1 name; {old: new} of those renamed."""
    prefix, r = app._core.keys.prefix, app.redis
    renamed: dict[str, str] = {}
    for raw in await namespace_keys(app):
        key = raw.decode()
        old = _old_name(prefix, key)
        if old != key:
            await r.rename(key, old)
            renamed[old] = key
    for raw in await namespace_keys(app):  # run fields that name a renamed key
        key = raw.decode()
        if _shape(app, key) == "run":
            for field in FIELDS:
                named = await r.hget(key, field)
                if named is not None and named.decode() in renamed.values():
                    old = next(o for o, n in renamed.items() if n == named.decode())
                    await r.hset(key, field, old)
    return renamed


def _shape(app: StackShift, key: str) -> str:
    reading = parse(app._core.keys.prefix, key)
    return reading[0] if reading is not None else ""


async def _convert(app: StackShift, cursor: str = "", limit: int = 7) -> int:
    calls = 0
    next_cursor: str | None = cursor
    while next_cursor is not None:
        next_cursor = await escape_key_names(app._core, next_cursor, limit)
        calls += 1
    return calls


def _jobs(app: StackShift) -> None:
    async def waiter(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event(
            "pay", event="order:paid", match={"id": ctx.payload}, lookback=600
        )
        return evt.data if evt else None

    async def slow(ctx: RunContext) -> str:
        await asyncio.sleep(ctx.payload["s"])
        return "slow"

    app.queue("q:1")
    app.job("billing:charge", lambda ctx: ctx.payload, queue="q:1")
    app.job("billing:waiter", waiter, queue="q:1")
    app.job(
        "flow:job", slow, queue="q:1", concurrency=[Concurrency(1, key="t")],
        throttle=Throttle(limit=100, period=60, key="t"), singleton=Singleton(key="o"),
    )  # fmt: skip


async def test_escape_key_names_converts_layout_1_and_the_runs_finish(
    app: StackShift, running_worker: Any
) -> None:
    _jobs(app)
    await app.send_event("order:paid", {"id": 99})  # an event kept for lookback
    waiting = await app.start("billing:waiter", 7)
    worker = running_worker(app, queues=["q:1"])
    await wait_for(lambda: _is(app, waiting.id, "waiting"), timeout=10)
    first = await app.start("flow:job", {"t": "a:b", "o": "x", "s": 0.01})
    await first.result(timeout=10)
    await worker.stop()
    charge = await app.start("billing:charge", {"n": 1}, idempotency_key="order:1")
    later = await app.start("billing:charge", {"n": 2}, delay=1)
    held = await app.start("flow:job", {"t": "a:b", "o": "y", "s": 0.01})
    before = sorted(k.decode() for k in await namespace_keys(app))
    renamed = await _downgrade(app)
    shapes = {_shape(app, new) for new in renamed.values()}
    assert {
        "idem",
        "stream",
        "ready",
        "ring",
        "queue_stat",
        "delayed",
        "event_shapes",
        "event_waiters",
        "event_log",
        "event_data",
        "throttle",
        "singleton",
    } <= shapes
    # a batch, then a crash: the next process starts over; then once more, to no effect
    assert await escape_key_names(app._core, "", 3) is not None
    assert await _convert(app) > 1
    assert sorted(k.decode() for k in await namespace_keys(app)) == before
    assert await _convert(app, limit=1000) >= 1
    assert sorted(k.decode() for k in await namespace_keys(app)) == before
    for run in (charge, held):
        h = await app.redis.hgetall(app._core.keys_of(run.id).run(run.id))
        for field in FIELDS:
            if field.encode() in h:
                assert h[field.encode()].decode() in before, (run.id, field)
    # the runs of layout 1 go on: the same idempotency key finds the same run, the waiting
    # run is resumed by its event, queued and delayed runs complete
    again = await app.start("billing:charge", {"n": 1}, idempotency_key="order:1")
    assert again.deduplicated and again.id == charge.id
    running_worker(app, queues=["q:1"])
    assert await charge.result(timeout=10) == {"n": 1}
    assert await later.result(timeout=10) == {"n": 2}
    assert await held.result(timeout=10) == "slow"
    sent = await app.send_event("order:paid", {"id": 7})
    assert sent.resumed == [waiting.id] and await waiting.result(timeout=10) == {"id": 7}
    skipped = await app.start("flow:job", {"t": "a:b", "o": "y", "s": 0.01})
    assert skipped.skipped is None  # the singleton of "y" was released when `held` ended


async def _is(app: StackShift, run_id: str, status: str) -> bool:
    return bool(await app.run(run_id).status() == status)


@pytest.mark.parametrize("family", ["queue", "flow", "event", "idem"])
async def test_every_changed_shape_is_renamed(app: StackShift, family: str) -> None:
    """Each key shape with a name part, one key each, written under its layout-1 name with
    a value of its type; the conversion gives each its name now."""
    k, r = app._core.keys, app.redis
    await app.state.set("anything", 1)  # the namespace's layout is recorded
    news: list[str] = []
    if family == "queue":
        for shape in ("stream", "ring", "queue_stat", "delayed", "leases", "queue_conf"):
            news.append(k.render(shape, "a:b"))
        news.append(k.ready("a:b", "job:x/0:stream"))
        # a queue with a 'ready' part, known from the job map: read as that queue's key
        await r.hset(k.jobs(), "j", "a:ready")
        news.append(k.stream("a:ready"))
    elif family == "flow":
        for shape in ("slot", "parked"):
            news.append(k.render(shape, "j:thr", "0:k"))
        for shape in ("throttle", "throttle_log", "rate_limit", "debounce", "singleton"):
            news.append(k.render(shape, "j:slot:1", "k"))
    elif family == "event":
        for shape in ("event_shapes", "event_log", "event_data"):
            news.append(k.render(shape, "e:w:x"))
        news.append(k.event_waiters("e:log", "", "ff" * 20))
    else:
        run = await app.start("a:b", queue_name="q", idempotency_key="c:d")
        news.append(k.idem("a:b", "c:d"))
        await r.hset(k.run(run.id), "idem_key", _old_name(k.prefix, news[0]))
    for new in news:
        old = _old_name(k.prefix, new)
        assert old != new
        if family == "idem":
            await r.rename(new, old)
        else:
            await r.set(old, "v")
    await _convert(app, limit=2)
    keys = {key.decode() for key in await namespace_keys(app)}
    assert set(news) <= keys
    assert not {_old_name(k.prefix, new) for new in news} & keys
    if family == "idem":
        found = await app.find_run("a:b", "c:d")
        assert found is not None and found.id == run.id
        assert await r.hget(k.run(run.id), "idem_key") == news[0].encode()


async def test_a_key_of_both_layouts_is_merged(app: StackShift) -> None:
    """A new name written before the conversion (no lock held): the members the new key
    lacks are added, counters add up, and the old key is gone."""
    k, r = app._core.keys, app.redis
    await app.state.set("anything", 1)
    await r.zadd(_old_name(k.prefix, k.delayed("q:1")), {"r1": 5, "r2": 6})
    await r.zadd(k.delayed("q:1"), {"r2": 9, "r3": 7})
    await r.hset(_old_name(k.prefix, k.queue_stat("q:1")), mapping={"ready": 2, "seq": 1})
    await r.hset(k.queue_stat("q:1"), mapping={"ready": 1})
    await _convert(app)
    assert await r.zrange(k.delayed("q:1"), 0, -1, withscores=True) == [
        (b"r1", 5.0), (b"r3", 7.0), (b"r2", 9.0)
    ]  # fmt: skip
    assert await r.hgetall(k.queue_stat("q:1")) == {b"ready": b"3", b"seq": b"1"}
    assert not await r.exists(_old_name(k.prefix, k.delayed("q:1")))


async def test_it_runs_as_a_step_of_the_layout_migration(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed in _core/migrations.py's MIGRATIONS: a namespace of layout 1 (no version
    recorded) is converted before the first script call goes through."""
    app = make_app()
    k = app._core.keys
    run = await app.start("a:b", queue_name="q:1", idempotency_key="k")
    renamed = await _downgrade(app)
    assert renamed
    await app.redis.delete(k.meta())  # as 6707af1 left it: no layout recorded
    [step] = [m for m in migrations.MIGRATIONS if m.convert is escape_key_names]
    assert step.layout == 3 <= layout.LAYOUT
    fresh = make_app(app.namespace)
    again = await fresh.start("a:b", queue_name="q:1", idempotency_key="k")
    assert again.deduplicated and again.id == run.id
    assert not set(renamed) & {key.decode() for key in await namespace_keys(app)}


async def test_untimed_indexes_drops_the_time_indexes_of_queued_and_running(
    app: StackShift,
) -> None:
    """Layout 4 (issue 22): the idx/idxj sets of queued and running and the ord/ordj sets
    of running go (queued runs are in the id-ordered sets too, running ones in their
    queue's leases, whose queues are noted); the others stay; twice is harmless."""
    app.job("a:b", lambda ctx: None)
    run = await app.start("a:b")
    k, r = app._core.keys, app.redis
    old = [k.idx_status("queued"), k.idx_status("running"), k.idx_job_status("a:b", "queued")]
    old += [k.idx_job_status("a:b", "running"), k.ord_status("running")]
    old.append(k.ord_job_status("a:b", "running"))
    kept = [k.idx_status("failed"), k.idx_job_status("a:b", "waiting"), k.ord_status("waiting")]
    for key in old + kept:  # as layout 3 wrote them
        await r.zadd(key, {run.id: 1})
    await r.zadd(k.leases("q:1"), {"r9": 1})  # a queue with leases: noted in leased_queues
    for _ in range(2):
        cursor: str | None = ""
        deleted = 0
        while cursor is not None:
            cursor, n = await drop_untimed_indexes(app._core, cursor, 3)
            deleted += n
    assert deleted == 0  # the second pass found nothing left
    assert [await r.exists(key) for key in old + kept] == [0] * len(old) + [1] * len(kept)
    assert await r.zrange(k.ord_status("queued"), 0, -1) == [run.id.encode()]
    assert await r.smembers(k.leased_queues()) == {b"q:1"}
    [step] = [m for m in migrations.MIGRATIONS if m.convert is drop_untimed_indexes]
    assert step.layout == 4 <= layout.LAYOUT
