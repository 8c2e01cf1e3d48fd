"""Events across partitions (issue 28, docs/design/partitions.md §4.8): a run waits, looks
back and is cancelled by CancelOn on its own partition, so send_event runs on every
partition (one leg each, in one pipeline), deduplicated per partition by the event id; a
run an event triggers starts on one leg only. At P=4 on real Redis (and cluster)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from helpers import skip_on_cluster, wait_for
from redis.exceptions import ConnectionError as RedisConnectionError
from test_lost_replies import DroppingProxy

from stackshift_redis import CancelOn, Concurrency, RunContext, StackShift
from stackshift_redis._core.partitions import route
from stackshift_redis._core.routing import pick_partition
from stackshift_redis._core.scripts import send_legs

P = 4


def key_on(part: int, salt: str = "") -> str:
    """A partition_key that routes to `part`."""
    return next(k for i in range(1000) if route(k := f"pk{salt}{i}", P) == part)


async def _is(app: StackShift, run_id: str, status: str) -> bool:
    return await app.run(run_id).status() == status


async def _all(app: StackShift, run_ids: list[str], status: str) -> bool:
    return all([await _is(app, r, status) for r in run_ids])


def _waiting_job(app: StackShift) -> None:
    @app.job("order")
    async def order(ctx: RunContext) -> Any:
        match = {"batch": ctx.payload["batch"]} if "batch" in ctx.payload else None
        evt = await ctx.step.wait_for_event(
            "paid", event="paid", match=match or {"order.id": ctx.payload["id"]}
        )
        return evt.data["amount"] if evt else None


async def test_one_event_resumes_its_waiters_on_every_partition(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)
    _waiting_job(app)
    runs = {
        batch: [
            (await app.start("order", {"batch": batch}, partition_key=key_on(p, batch))).id
            for p in range(P)
        ]
        for batch in ("b1", "b2")
    }
    assert sorted(app._core.part_of(r) for r in runs["b1"]) == list(range(P))
    running_worker(app, concurrency=8)
    await wait_for(lambda: _all(app, runs["b1"] + runs["b2"], "waiting"), 20)
    sent = await app.send_event("paid", {"batch": "b1", "amount": 5}, id="evt-1")
    assert sorted(sent.resumed) == sorted(runs["b1"]) and not sent.duplicate
    assert [await app.run(r).result(timeout=15) for r in runs["b1"]] == [5] * P
    again = await app.send_event("paid", {"batch": "b2", "amount": 9}, id="evt-1")
    assert again.duplicate and again.resumed == []  # the id was seen on every partition
    await asyncio.sleep(0.3)
    assert await _all(app, runs["b2"], "waiting")
    last = await app.send_event("paid", {"batch": "b2", "amount": 9}, id="evt-2")
    assert sorted(last.resumed) == sorted(runs["b2"])
    assert [await app.run(r).result(timeout=15) for r in runs["b2"]] == [9] * P


async def test_correlation_by_data_finds_the_run_on_its_partition(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)
    _waiting_job(app)
    runs = [
        (await app.start("order", {"id": f"o{i}"}, partition_key=key_on(i % P, str(i)))).id
        for i in range(2 * P)
    ]
    running_worker(app, concurrency=8)
    await wait_for(lambda: _all(app, runs, "waiting"), 20)
    sent = await app.send_event("paid", {"order": {"id": "o6"}, "amount": 6})
    assert sent.resumed == [runs[6]] and app._core.part_of(runs[6]) == 2
    assert await app.run(runs[6]).result(timeout=15) == 6
    assert await _all(app, [r for i, r in enumerate(runs) if i != 6], "waiting")
    for i, run in enumerate(runs):
        if i != 6:
            got = await app.send_event("paid", {"order": {"id": f"o{i}"}, "amount": i})
            assert got.resumed == [run]
    assert [await app.run(r).result(timeout=15) for r in runs] == list(range(2 * P))


async def test_a_step_sends_to_waiters_on_other_partitions(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)
    _waiting_job(app)

    @app.job("payer")
    async def payer(ctx: RunContext) -> Any:
        return await ctx.step.send_event("pay", "paid", {"batch": "b", "amount": 3})

    waiters = [
        (await app.start("order", {"batch": "b"}, partition_key=key_on(p, "w"))).id
        for p in range(1, P)
    ]
    running_worker(app, concurrency=8)
    await wait_for(lambda: _all(app, waiters, "waiting"), 20)
    sender = await app.start("payer", partition_key=key_on(0, "s"))
    sent = await sender.result(timeout=15)
    assert sorted(sent["resumed"]) == sorted(waiters) and sent["id"] == f"{sender.id}:pay"
    assert [await app.run(r).result(timeout=15) for r in waiters] == [3] * (P - 1)


async def test_lookback_finds_an_earlier_event_on_partition_3(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)

    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event(
            "w", event="ready", match={"id": ctx.payload["id"]}, lookback=ctx.payload["lb"],
            timeout=1,
        )  # fmt: skip
        return evt.id if evt else None

    await app.send_event("ready", {"id": "a"}, id="early-a")
    await app.send_event("ready", {"id": "b"}, id="early-b")
    found = await app.start("j", {"id": "a", "lb": 60}, partition_key=key_on(3))
    missed = await app.start("j", {"id": "b", "lb": 0}, partition_key=key_on(3, "x"))
    assert app._core.part_of(found.id) == app._core.part_of(missed.id) == 3
    running_worker(app)
    assert await found.result(timeout=15) == "early-a"
    assert await missed.result(timeout=15) is None
    info = await app.get_run(found.id)
    assert info is not None and "waiting" not in [e["type"] for e in info.timeline]


async def test_a_trigger_starts_exactly_one_run_per_event(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)

    @app.job("welcome", on_event="user.signup", queue="mail")
    async def welcome(ctx: RunContext) -> str:
        assert ctx.event is not None
        return f"hi {ctx.payload['name']} ({ctx.event.id})"

    app.job(
        "bill", lambda ctx: ctx.payload["acct"], on_event="user.signup",
        concurrency=Concurrency(1, key="acct"),
    )  # fmt: skip
    running_worker(app, queues=["default", "mail"])
    triggers = app._core.keys.triggers("user.signup")

    async def published() -> bool:
        return bool(await app.redis.hlen(triggers) == 2)

    await wait_for(published, 10)  # the worker published both triggers
    sender = make_app(app.namespace, partitions=P)  # knows no jobs: the stored triggers
    ns = sender._core
    bill = app._core.definitions.rules("bill")
    assert bill is not None
    parts = set()
    for i in range(12):
        data = {"name": f"u{i}", "acct": i}
        sent = await sender.send_event("user.signup", data, id=f"s{i}")
        assert len(sent.started) == 2 and not sent.duplicate
        jobs = {}
        for r in sent.started:
            info = await sender.get_run(r)
            assert info is not None
            jobs[info.job] = r
        assert await sender.run(jobs["welcome"]).result(timeout=20) == f"hi u{i} (s{i})"
        assert await sender.run(jobs["bill"]).result(timeout=20) == i
        assert ns.part_of(jobs["welcome"]) == route(f"s{i}", P)  # by the event id
        assert ns.part_of(jobs["bill"]) == pick_partition(P, "bill", bill.flow, data)  # by acct
        parts.add(ns.part_of(jobs["welcome"]))
    assert len(parts) > 1  # events spread their runs over the partitions
    again = await sender.send_event("user.signup", {"name": "u0", "acct": 0}, id="s0")
    assert again.duplicate and again.started == []
    for job in ("welcome", "bill"):  # one run of each job per event, on all partitions
        done = [await app.redis.zcard(k.ord_job_status(job, "completed")) for k in ns.part_keys]
        assert sum(done) == 12, (job, done)


async def test_cancel_on_cancels_runs_on_every_partition(
    make_app: Callable[..., StackShift],
) -> None:
    app = make_app(partitions=P)
    app.job("j", lambda ctx: None, queue="q", cancel_on=CancelOn("stop", match="id"))
    runs = [
        (await app.start("j", {"id": i % 2}, partition_key=key_on(i % P, str(i)))).id
        for i in range(2 * P)
    ]
    sent = await app.send_event("stop", {"id": 1}, id="e1")
    odd = runs[1::2]
    assert sorted(sent.cancelled) == sorted(odd) and not sent.duplicate
    assert {app._core.part_of(r) for r in odd} == {1, 3}
    assert await _all(app, odd, "cancelled") and await _all(app, runs[0::2], "queued")
    again = await app.send_event("stop", {"id": 0}, id="e1")
    assert again.duplicate and again.cancelled == []
    rest = await app.send_event("stop", {"id": 0}, id="e2")
    assert sorted(rest.cancelled) == sorted(runs[0::2])
    assert {app._core.part_of(r) for r in runs[0::2]} == {0, 2}


async def test_a_send_cut_short_is_completed_by_a_resend_of_its_id(
    make_app: Callable[..., StackShift],
) -> None:
    app = make_app(partitions=P)
    app.job("j", lambda ctx: None, queue="q", cancel_on=CancelOn("stop"))
    runs = [(await app.start("j", i, partition_key=key_on(i))).id for i in range(P)]
    ns = app._core
    bus = app._events
    request = bus.prepare("stop", {}, "e1")
    await ns.definitions.load()
    # the sender died after the legs of partitions 0 and 1
    half = await send_legs(ns.redis, [(ns.part_scripts(p), request) for p in (0, 1)])
    assert sorted(c for r in half for c in r.cancelled) == sorted(runs[:2])
    assert await _all(app, runs[2:], "queued")
    resent = await app.send_event("stop", {}, id="e1")  # a new call, the same event id
    assert sorted(resent.cancelled) == sorted(runs[2:]) and not resent.duplicate
    assert await _all(app, runs, "cancelled")
    assert (await app.send_event("stop", {}, id="e1")).duplicate


async def test_one_partition_is_one_send_event_call(
    make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(partitions=1)
    app.job("j", lambda ctx: None, queue="q", cancel_on=CancelOn("stop"))
    run = await app.start("j", 1)
    calls: list[tuple[str, int]] = []
    door = app._core.scripts
    real = door.call

    async def spy(name: str, keys: Any, args: Any) -> Any:
        calls.append((name, len(args)))
        return await real(name, keys, args)

    monkeypatch.setattr(door, "call", spy)
    sent = await app.send_event("stop", {})
    assert sent.cancelled == [run.id]
    assert calls == [("send_event", 14)]  # today's call: no leg flag, no trigger lookup


@skip_on_cluster  # the proxy fronts one server
async def test_legs_resent_after_lost_replies_act_once(
    make_app: Callable[..., StackShift], redis_url: str
) -> None:
    """A pipeline of legs whose reply is lost is sent again with the same call token: each
    leg reports its first outcome, so the caller sees every cancel once, not a duplicate."""
    u = urlparse(redis_url)
    proxy = DroppingProxy((u.hostname or "127.0.0.1", u.port or 6379), p=0.3, seed=11)
    await proxy.start()
    direct = make_app(partitions=P)
    direct.job("j", lambda ctx: None, queue="q", cancel_on=CancelOn("stop", match="id"))
    runs = [
        (await direct.start("j", {"id": i}, partition_key=key_on(i % P, str(i)))).id
        for i in range(24)
    ]
    app = StackShift(f"redis://127.0.0.1:{proxy.port}/0", namespace=direct.namespace, partitions=P)
    app.job("j", lambda ctx: None, queue="q", cancel_on=CancelOn("stop", match="id"))
    try:
        for i, run in enumerate(runs):
            attempt, sent = await _send_surely(app, "stop", {"id": i}, f"e{i}")
            assert sent.cancelled == [run] or (attempt > 0 and sent.duplicate), (attempt, sent)
            assert attempt > 0 or not sent.duplicate
        assert proxy.dropped > 3, "the proxy did not drop replies"
        assert await _all(direct, runs, "cancelled")
    finally:
        await app.close()
        await proxy.close()


async def _send_surely(app: StackShift, name: str, data: Any, event_id: str) -> tuple[int, Any]:
    """(attempt, result): a send whose every re-send lost its reply (rare) is sent again by
    the caller with its event id, which is safe."""
    for attempt in range(9):
        with contextlib.suppress(RedisConnectionError):
            return attempt, await app.send_event(name, data, id=event_id)
    return 9, await app.send_event(name, data, id=event_id)
