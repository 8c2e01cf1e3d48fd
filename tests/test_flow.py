"""Flow control on real Redis: per-key concurrency and fairness on the take path, and the
start-side rules (throttle, rate limit, debounce, singleton, cancel on event, priority).

Runs are taken through `app._core.scripts.take` directly so each test sees exactly what one
take gives; the worker-level tests are in tests/test_flow_workers.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import pytest
from helpers import namespace_keys, zcard_parts

from stackshift_redis import (
    CancelOn,
    Concurrency,
    Debounce,
    RateLimit,
    Singleton,
    StackShift,
    Throttle,
)
from stackshift_redis._core.flow import key_id
from stackshift_redis._core.partitions import route
from stackshift_redis._core.routing import SEP
from stackshift_redis._core.scripts import SleepRequest, TakenRun
from stackshift_redis.errors import InvalidArgumentError

OPTS: dict[str, Any] = {"max_deliveries": 5, "retention_ms": 60_000}


def _nap(t: TakenRun) -> SleepRequest:
    """A minute's sleep of taken run `t` that parks it at once."""
    return SleepRequest(
        run_id=t.run_id,
        token=t.token,
        step="nap",
        rel_ms=60_000,
        until_ms=-1,
        record=b"\xc0",
        park=True,
    )


async def _take(app: StackShift, n: int, queue: str = "q") -> list[Any]:
    """Up to `n` runs taken from the partitions in turn (one take with one partition)."""
    taken: list[Any] = []
    for p in range(app._core.partitions):
        scripts = app._core.part_scripts(p)
        taken += (await scripts.take([(queue, 30_000)], n - len(taken), **OPTS)).taken
        if len(taken) >= n:
            break
    return taken


async def _promote(app: StackShift, queue: str = "q") -> None:
    for p in range(app._core.partitions):
        await app._core.part_scripts(p).promote(queue)


async def _complete(app: StackShift, taken: Any) -> None:
    scripts = app._core.scripts_of(taken.run_id)
    call = scripts.complete_call(taken.run_id, taken.token, app.serializer.dumps(1), 60_000)
    assert await scripts.run_batch([call]) == [1]


def _together(app: StackShift, job: str, n: int) -> list[str]:
    """`n` flow-control key values whose runs of `job` share a partition: "a", "b", "c"...
    with one partition (values routed elsewhere are passed over with more)."""
    names = [*"abcdefghijklmnopqrstuvwxyz"] + [f"k{i}" for i in range(200)]
    part = [route(job + SEP + key_id(v), app._core.partitions) for v in names]
    return [v for v, p in zip(names, part, strict=True) if p == part[0]][:n]


async def _payload(app: StackShift, run_id: str) -> Any:
    info = await app.get_run(run_id)
    assert info is not None
    return info.payload


# declaration and start-time validation
@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda: Concurrency(limit=0), "Concurrency limit"),
        (lambda: Concurrency(limit=2, key="bad path!"), "Concurrency key"),
        (lambda: Throttle(limit=10, period=0), "Throttle period"),
        (lambda: Throttle(limit=-1, period=1), "Throttle limit"),
        (lambda: Throttle(limit=1, period=1, burst=-1), "Throttle burst"),
        (lambda: RateLimit(limit=1, period=-5), "RateLimit period"),
        (lambda: Debounce(period=0), "Debounce period"),
        (lambda: Debounce(period=1, timeout=0), "Debounce timeout"),
        (lambda: Singleton(mode="replace"), "Singleton mode"),
        (lambda: CancelOn(), "CancelOn event"),
        (lambda: CancelOn(event="bad name!"), "event name"),
        (lambda: CancelOn(event="e", match={}), "CancelOn match"),
    ],
)
def test_bad_flow_config_names_the_argument(make: Any, word: str) -> None:
    with pytest.raises(InvalidArgumentError, match=word):
        make()


def test_bad_job_options_name_the_argument(app: StackShift) -> None:
    with pytest.raises(InvalidArgumentError, match="priority"):
        app.job("p", lambda ctx: None, priority=101)
    with pytest.raises(InvalidArgumentError, match="concurrency"):
        app.job("c", lambda ctx: None, concurrency=[2])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="throttle"):
        app.job("t", lambda ctx: None, throttle=RateLimit(1, 1))  # type: ignore[arg-type]
    assert app.jobs == {}


async def test_bad_start_input_writes_nothing(app: StackShift) -> None:
    app.job(
        "j", lambda ctx: None, queue="q", concurrency=Concurrency(1, key="tenant.id"),
        cancel_on=CancelOn("order.cancelled", match={"order_id": "order"}),
    )  # fmt: skip
    before = await namespace_keys(app)
    with pytest.raises(InvalidArgumentError, match="priority"):
        await app.start("j", {"tenant": {"id": 1}, "order": 1}, priority=-101)
    with pytest.raises(InvalidArgumentError, match="priority"):
        await app.start("j", {"tenant": {"id": 1}, "order": 1}, priority=True)
    with pytest.raises(InvalidArgumentError, match=r"Concurrency key.*tenant\.id"):
        await app.start("j", {"tenant": {}, "order": 1})
    with pytest.raises(InvalidArgumentError, match=r"CancelOn match.*order"):
        await app.start("j", {"tenant": {"id": 1}})
    with pytest.raises(InvalidArgumentError, match="Concurrency key"):  # one bad payload: none
        await app.start_many("j", [{"tenant": {"id": 1}, "order": 1}, {"order": 2}])
    assert await namespace_keys(app) == before


# per-key concurrency and fairness
async def test_per_key_limit_parks_the_key_and_frees_on_completion(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", concurrency=Concurrency(2, key="k"))
    ka, kb = _together(app, "j", 2)
    a = [(await app.start("j", {"k": ka, "i": i})).id for i in range(5)]
    b = [(await app.start("j", {"k": kb, "i": i})).id for i in range(2)]
    keys = app._core.keys_of(a[0])
    taken = await _take(app, 10)
    assert sorted(t.run_id for t in taken) == sorted(a[:2] + b)
    assert await _take(app, 10) == []  # key a is full; its runs stay queued, not leased
    assert await app.redis.zcard(keys.ring("q")) == 0  # parked, off the ring
    assert await app.redis.zcard(keys.ready("q", f"j/0:{ka}")) == 3
    await _complete(app, next(t for t in taken if t.run_id == a[0]))
    assert [t.run_id for t in await _take(app, 10)] == [a[2]]  # FIFO within the key
    assert await app.redis.scard(keys.slot("j", f"0:{ka}")) == 2


@pytest.mark.skipif(
    os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1") != "1",
    reason="with partitions, a job's flow-control rules must all key on one value (a keyed "
    "and a job-wide Concurrency are refused: scaling-out guide, D5)",
)
async def test_several_entries_all_apply(app: StackShift) -> None:
    app.job(
        "j", lambda ctx: None, queue="q",
        concurrency=[Concurrency(2, key="k"), Concurrency(3)],  # per key, and for the job
    )  # fmt: skip
    for k in "abc":
        for i in range(3):
            await app.start("j", {"k": k, "i": i})
    taken = await _take(app, 10)
    assert len(taken) == 3  # the job-wide limit
    keys = [(await _payload(app, t.run_id))["k"] for t in taken]
    assert max(keys.count(k) for k in "abc") <= 2
    for t in taken:
        await _complete(app, t)
    again = await _take(app, 10)
    assert len(again) == 3
    assert await app.redis.scard(app._core.keys.slot("j", "1:*")) == 3


async def test_a_quiet_key_is_not_held_up_by_a_noisy_backlog(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", concurrency=Concurrency(1000, key="k"))
    k_noisy, k_quiet = _together(app, "j", 2)
    await app.start_many("j", [{"k": k_noisy, "i": i} for i in range(1000)])
    quiet = await app.start("j", {"k": k_quiet})
    first = await _take(app, 2)
    assert quiet.id in [t.run_id for t in first]


async def test_keys_take_turns_when_takes_are_one_at_a_time(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", concurrency=Concurrency(1000, key="k"))
    k_noisy, k_quiet = _together(app, "j", 2)
    noisy = await app.start_many("j", [{"k": k_noisy, "i": i} for i in range(50)])
    assert [t.run_id for t in await _take(app, 1)] == [noisy[0].id]  # the only key
    assert [t.run_id for t in await _take(app, 1)] == [noisy[1].id]
    quiet = await app.start("j", {"k": k_quiet})  # joins the ring behind noisy's next turn
    order = [t.run_id for _ in range(4) for t in await _take(app, 1)]
    assert order == [noisy[2].id, quiet.id, noisy[3].id, noisy[4].id]


async def test_slots_are_freed_by_suspend_and_by_lease_recovery(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", concurrency=Concurrency(1, key="k"))
    r1 = await app.start("j", {"k": "a"})
    r2 = await app.start("j", {"k": "a"})
    [t1] = await _take(app, 5)
    assert t1.run_id == r1.id
    assert (await app._core.scripts_of(t1.run_id).sleep(_nap(t1))).parked
    [t2] = await _take(app, 5)  # the sleeping run holds no slot
    assert t2.run_id == r2.id
    keys, scripts = app._core.keys_of(r2.id), app._core.scripts_of(r2.id)
    await app.redis.zadd(keys.leases("q"), {t2.run_id: 1})  # its worker died
    assert await scripts.reclaim("q", 60_000) == [t2.run_id]
    assert await app.redis.scard(keys.slot("j", "0:a")) == 0
    [t3] = await _take(app, 5)
    assert t3.run_id == r2.id and t3.execution == 2


async def test_a_poisoned_run_gives_its_slot_back(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", concurrency=Concurrency(1, key="k"))
    r1 = await app.start("j", {"k": "a"})
    r2 = await app.start("j", {"k": "a"})
    await app.redis.hset(app._core.keys_of(r1.id).run(r1.id), "deliveries", 5)
    reply = await app._core.scripts_of(r1.id).take([("q", 30_000)], 5, **OPTS)
    assert reply.dropped == [(r1.id, "q", "poison")]
    assert [t.run_id for t in reply.taken] == [r2.id]


@pytest.mark.skipif(
    os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1") != "1",
    reason="with partitions, a job's flow-control rules must all key on one value (a keyed "
    "and a job-wide Concurrency are refused: scaling-out guide, D5)",
)
async def test_cancelled_parked_runs_do_not_strand_other_keys(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", concurrency=[Concurrency(1, key="k"), Concurrency(1)])
    a1 = await app.start("j", {"k": "a"})
    b1 = await app.start("j", {"k": "b"})
    c1 = await app.start("j", {"k": "c"})
    [t] = await _take(app, 5)
    assert t.run_id == a1.id
    assert await _take(app, 5) == []  # b and c parked on the job-wide slot
    await app.cancel(b1.id)
    await _complete(app, t)
    assert [x.run_id for x in await _take(app, 5)] == [c1.id]


# priority
async def test_priority_from_the_job_and_the_start(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", priority=-5)
    low = await app.start("j", partition_key="p")  # one partition: one take sees all three
    mid = await app.start("j", priority=0, partition_key="p")
    high = await app.start("j", priority=100, partition_key="p")
    assert [t.run_id for t in await _take(app, 5)] == [high.id, mid.id, low.id]


# throttle
async def test_throttle_spaces_starts_and_drops_nothing(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", throttle=Throttle(5, period=4, key="k", burst=1))
    ka, kb = _together(app, "j", 2)
    runs = [await app.start("j", {"k": ka, "i": i}) for i in range(6)]
    other = await app.start("j", {"k": kb})
    assert await other.status() == "queued"
    statuses = [await r.status() for r in runs]
    assert statuses[:2] == ["queued", "queued"]  # burst 1: two at once
    assert statuses[2:] == ["scheduled"] * 4
    due = [await app.redis.zscore(app._core.keys_of(r.id).delayed("q"), r.id) for r in runs[2:]]
    gaps = [b - a for a, b in itertools.pairwise(due)]
    # 4 s / 5 (not 1 s / 5: the 3rd start must come before the 2nd's 0.8 s, even when loaded)
    assert all(795 <= g <= 805 for g in gaps), gaps
    await asyncio.sleep(4.0)
    await _promote(app)
    taken = [t.run_id for t in await _take(app, 10)]  # in order of becoming ready
    assert taken == [runs[0].id, runs[1].id, other.id] + [r.id for r in runs[2:]]


# rate limit
async def test_rate_limit_skips_starts_over_the_limit(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", rate_limit=RateLimit(2, period=3, key="user"))
    first = [await app.start("j", {"user": "u1"}) for _ in range(2)]
    before = await namespace_keys(app)
    skipped = await app.start("j", {"user": "u1"})
    assert skipped.skipped == "rate_limited" and skipped.id is None
    assert await namespace_keys(app) == before
    assert all(r.skipped is None and r.id for r in first)
    assert (await app.start("j", {"user": "u2"})).skipped is None
    many = await app.start_many("j", [{"user": "u3"}] * 3)
    assert [r.skipped for r in many] == [None, None, "rate_limited"]
    await asyncio.sleep(3.1)  # a period that outlasts a loaded machine's stalls
    assert (await app.start("j", {"user": "u1"})).skipped is None


# debounce
async def test_debounce_folds_a_burst_into_one_run_with_the_last_payload(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", debounce=Debounce(period=0.3, key="doc"))
    runs = [await app.start("j", {"doc": "d1", "v": v}) for v in range(5)]
    assert len({r.id for r in runs}) == 1
    assert [r.deduplicated for r in runs] == [False] + [True] * 4
    other = await app.start("j", {"doc": "d2", "v": 9})
    assert other.id != runs[0].id
    assert await _payload(app, runs[0].id) == {"doc": "d1", "v": 4}
    assert await runs[0].status() == "scheduled"
    assert await zcard_parts(app, lambda k: k.delayed("q")) == 2
    await asyncio.sleep(0.4)
    await _promote(app)
    assert {t.run_id for t in await _take(app, 5)} == {runs[0].id, other.id}
    after = await app.start("j", {"doc": "d1", "v": 5})  # the burst is over: a new run
    assert after.id != runs[0].id and not after.deduplicated


async def test_debounce_timeout_caps_the_delay(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", debounce=Debounce(period=10, timeout=0.4))
    first = await app.start("j", 1)
    delayed = app._core.keys_of(first.id).delayed("q")
    first_due = await app.redis.zscore(delayed, first.id)
    await asyncio.sleep(0.1)
    again = await app.start("j", 2)
    assert again.id == first.id
    assert await app.redis.zscore(delayed, first.id) == first_due


# singleton
async def test_singleton_skip(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", singleton=Singleton(key="acct"))
    one = await app.start("j", {"acct": 1})
    two = await app.start("j", {"acct": 1})
    assert two.skipped == "singleton" and two.id is None
    assert (await app.start("j", {"acct": 2})).skipped is None
    taken = {t.run_id: t for t in await _take(app, 5)}
    assert (await app.start("j", {"acct": 1})).skipped == "singleton"  # running counts
    assert one.id is not None
    await _complete(app, taken[one.id])
    assert (
        await app.redis.exists(app._core.keys_of(one.id).singleton("j", "1")) == 0
    )  # released at finish
    three = await app.start("j", {"acct": 1})
    assert three.skipped is None and three.id != one.id


async def test_singleton_cancel_replaces_the_old_run(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", singleton=Singleton(key="acct", mode="cancel"))
    queued = await app.start("j", {"acct": 1})
    newer = await app.start("j", {"acct": 1})
    assert await queued.status() == "cancelled"
    [t] = await _take(app, 5)
    assert t.run_id == newer.id
    newest = await app.start("j", {"acct": 1})  # the running one is flagged
    assert await app.redis.hget(app._core.keys_of(newer.id).run(newer.id), "cancel") is not None
    assert await newest.status() == "queued"


# cancel on event
async def test_cancel_on_event_in_any_state(app: StackShift) -> None:
    app.job(
        "j", lambda ctx: None, queue="q",
        cancel_on=[CancelOn("order.cancelled", match="order_id"),
                   CancelOn("account.closed", match={"account.id": "acct"}, timeout=0.2)],
    )  # fmt: skip
    one = "p"  # one partition, so that one take sees them all
    queued = await app.start("j", {"order_id": 1, "acct": "x"}, partition_key=one)
    running = await app.start("j", {"order_id": 2, "acct": "x"}, partition_key=one)
    kept = await app.start("j", {"order_id": 3, "acct": "y"}, partition_key=one)
    ready = app._core.keys_of(queued.id).ready("q", "0")
    await app.redis.zrem(ready, queued.id)  # take only `running`...
    [t] = await _take(app, 1)
    await app.redis.zadd(ready, {queued.id: 1})  # ...then put it back
    assert t.run_id == running.id
    sent = await app.send_event("order.cancelled", {"order_id": 1})
    assert sent.cancelled == [queued.id]
    assert await queued.status() == "cancelled"
    sent = await app.send_event("order.cancelled", {"order_id": 2})
    assert sent.cancelled == [running.id]
    assert await app.redis.hget(app._core.keys_of(running.id).run(running.id), "cancel") is not None
    assert (await app.send_event("order.cancelled", {"order_id": 99})).cancelled == []
    await asyncio.sleep(0.3)  # the account rule's timeout has passed
    assert (await app.send_event("account.closed", {"account": {"id": "y"}})).cancelled == []
    assert await kept.status() == "queued"
    # a finished run leaves the correlation index
    await app.cancel(kept.id)
    shapes = [
        await app.redis.hgetall(k.event_shapes("order.cancelled")) for k in app._core.part_keys
    ]  # per partition: only the running run's partition registers it
    assert [s for s in shapes if s] == [
        {b"order_id": b"1"}
    ]  # only the running run is still registered


async def test_cancel_on_any_event_of_a_name(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", cancel_on=CancelOn("shutdown"))
    runs = [await app.start("j", i) for i in range(3)]
    sent = await app.send_event("shutdown", {})
    assert sorted(sent.cancelled) == sorted(r.id for r in runs)


async def test_throttle_holds_on_actual_starts_when_workers_fall_behind(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", throttle=Throttle(2, period=2))
    runs = [await app.start("j", i) for i in range(3)]  # ready at +0, +1 s, +2 s
    await asyncio.sleep(2.1)  # no worker took them in time
    await _promote(app)
    taken = await _take(app, 5)
    assert [t.run_id for t in taken] == [runs[0].id, runs[1].id]
    assert await runs[2].status() == "scheduled"  # its start would be the 3rd within 2 s
    info = await app.get_run(str(runs[2].id))
    assert info is not None and info.timeline[-1]["type"] == "throttled"
    keys = app._core.keys_of(str(runs[2].id))
    due = await app.redis.zscore(keys.delayed("q"), runs[2].id)
    secs, micros = await app.redis.time()
    assert 0 < due - (secs * 1000 + micros // 1000) <= 2000
    stat = await app.redis.hmget(keys.queue_stat("q"), "ready", "scheduled")
    assert stat == [b"0", b"1"]  # the queue counters follow the deferred run


async def test_runs_started_by_events_are_flow_controlled(app: StackShift) -> None:
    app.job(
        "on_signup", lambda ctx: None, queue="q", on_event="user.signup", priority=7,
        concurrency=Concurrency(1, key="team"), rate_limit=RateLimit(2, period=60, key="team"),
    )  # fmt: skip
    started = []
    for i in range(3):
        sent = await app.send_event("user.signup", {"team": "t1", "i": i})
        started += sent.started
    assert len(started) == 2  # the third start was over the rate limit
    fields = await app.redis.hmget(
        app._core.keys_of(started[0]).run(started[0]), "group", "priority"
    )
    assert fields == [b"on_signup/0:t1", b"7"]
    assert [t.run_id for t in await _take(app, 5)] == [started[0]]  # one at a time per team
    with pytest.raises(InvalidArgumentError, match="Concurrency key"):
        await app.send_event("user.signup", {"i": 9})


async def test_a_place_held_by_a_run_that_is_not_running_is_repaired(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", concurrency=Concurrency(1, key="k"))
    run = await app.start("j", {"k": "a"})
    slot = app._core.keys_of(str(run.id)).slot("j", "0:a")
    await app.redis.sadd(slot, "lost-run-id")  # e.g. a lost write
    assert [t.run_id for t in await _take(app, 5)] == [run.id]
    assert await app.redis.smembers(slot) == {str(run.id).encode()}


def test_the_sync_facade_reports_skipped_starts(redis_server: Any) -> None:
    app = redis_server.app()
    app.job("j", lambda ctx: None, queue="q", singleton=Singleton())
    try:
        first = app.sync.start("j", priority=3)
        second = app.sync.start("j")
        assert first.skipped is None and first.id is not None
        assert (second.skipped, second.id) == ("singleton", None)
    finally:
        asyncio.run(redis_server.close_app(app))


async def test_cancel_on_event_ends_scheduled_and_waiting_runs(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="q", cancel_on=CancelOn("stop", match="id"))
    later = await app.start("j", {"id": 1}, delay=60, partition_key="p")
    waiting = await app.start("j", {"id": 1}, partition_key="p")
    [t] = await _take(app, 1)
    assert t.run_id == waiting.id
    assert (await app._core.scripts_of(t.run_id).sleep(_nap(t))).parked
    sent = await app.send_event("stop", {"id": 1})
    assert sorted(sent.cancelled) == sorted([later.id, waiting.id])
    assert [await later.status(), await waiting.status()] == ["cancelled", "cancelled"]
    assert await zcard_parts(app, lambda k: k.delayed("q")) == 0
    assert [await app.redis.exists(k.event_shapes("stop")) for k in app._core.part_keys] == [
        0
    ] * app._core.partitions  # nothing left behind


async def test_flow_control_under_testenv_virtual_time() -> None:
    from datetime import timedelta

    from stackshift_redis.testing import TestEnv

    app = StackShift(namespace="flowenv")
    app.job("j", lambda ctx: None, throttle=Throttle(2, period=60), cancel_on=CancelOn("stop"))
    app.job("d", lambda ctx: ctx.payload, debounce=Debounce(period=10, key="k"))
    async with TestEnv(app) as env:
        runs = [await app.start("j", i) for i in range(4)]  # due at 0, 30, 60, 90 s
        await env.drain()
        assert [await r.status() for r in runs] == ["completed"] + ["scheduled"] * 3
        await env.advance(timedelta(seconds=61))
        assert [await r.status() for r in runs][2:] == ["completed", "scheduled"]
        assert (await app.send_event("stop", {})).cancelled == [runs[3].id]
        burst = [await app.start("d", {"k": "z", "v": v}) for v in range(3)]
        await env.advance(timedelta(seconds=11))
        assert len({r.id for r in burst}) == 1
        assert await burst[0].result(timeout=1) == {"k": "z", "v": 2}


@pytest.mark.skipif(
    os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1") != "1",
    reason="with partitions, a job's flow-control rules must all key on one value (a keyed "
    "and a job-wide Concurrency are refused: scaling-out guide, D5)",
)
async def test_nothing_is_left_behind_once_runs_finish(app: StackShift) -> None:
    app.job(
        "j", lambda ctx: None, queue="q", concurrency=[Concurrency(1, key="k"), Concurrency(2)],
        singleton=Singleton(key="k", mode="cancel"), cancel_on=CancelOn("stop", match="k"),
    )  # fmt: skip
    for k in ("a", "b", "c", "a"):  # the second "a" replaces the first
        await app.start("j", {"k": k})
    while taken := await _take(app, 5):
        for t in taken:
            await _complete(app, t)
    left = [k for k in await namespace_keys(app) if b":fc:" in k or b":ev:" in k]
    assert left == [], left  # slots, parked groups, singleton keys, cancel registrations


@pytest.mark.skipif(
    os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1") != "1",
    reason="with partitions, a job's flow-control rules must all key on one value (a keyed "
    "and a job-wide Concurrency are refused: scaling-out guide, D5)",
)
async def test_cancelling_the_run_a_freed_place_woke_wakes_the_next_parked_group(
    app: StackShift,
) -> None:
    """A place frees and wakes group b (parked longest); b's only run is cancelled before
    a take reaches it: the wake-up passes on to group c instead of being lost."""
    app.job("j", lambda ctx: None, queue="q",
            concurrency=[Concurrency(5, key="k"), Concurrency(1)])  # fmt: skip
    a = await app.start("j", {"k": "a"})
    [ta] = await _take(app, 1)
    assert ta.run_id == a.id
    b = await app.start("j", {"k": "b"})
    c = await app.start("j", {"k": "c"})
    assert await _take(app, 2) == []  # both groups park on the job's one place
    await _complete(app, ta)  # the place frees: group b is woken
    assert await app.cancel(b.id) is True
    [tc] = await _take(app, 1)
    assert tc.run_id == c.id
