"""A transactional step's events with partitions (P=4, real Redis and cluster): the commit
sends the event's leg of its own partition and writes every other leg to its outbox in the
same script call (lua/transact.lua); the caller applies those legs at once, the relay
applies them again (or alone, when the caller could not): each leg is deduplicated by the
event id and the commit's call token, so waiters on every partition resume once and a
triggered run starts once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import wait_for

from stackshift_redis import RunContext, StackShift, StateTx
from stackshift_redis._attempt import transact as tx_mod
from stackshift_redis._core.partitions import route
from stackshift_redis._worker.relay import Relay
from stackshift_redis.hooks import Hook

P = 4
STATE = "{pay}:n"  # the commit's state: the commit runs on its partition


def key_on(part: int, salt: str = "") -> str:
    """A partition_key that routes to `part`."""
    return next(k for i in range(1000) if route(k := f"pk{salt}{i}", P) == part)


def id_off(part: int) -> str:
    """An event id routing elsewhere than `part` (its triggered run starts there)."""
    return next(e for i in range(1000) if route(e := f"ev{i}", P) != part)


class Told(Hook):
    """Records what event_sent hooks are told."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], list[str]]] = []

    def event_sent(self, name: str, resumed: list[str], started: list[str]) -> None:
        self.sent.append((name, resumed, started))


def _jobs(app: StackShift) -> None:
    @app.job("order")
    async def order(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event("paid", event="paid", match={"batch": ctx.payload})
        return evt.data["amount"] if evt else None

    @app.job("looker")
    async def looker(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event(
            "w", event="paid", match={"batch": ctx.payload}, lookback=60, timeout=1
        )
        return evt.id if evt else None

    @app.job("kicked", on_event="paid")
    async def kicked(ctx: RunContext) -> Any:
        assert ctx.event is not None
        return ctx.event.id

    async def pay(tx: StateTx, batch: str, event_id: str) -> int:
        n = await tx.incr(STATE)
        tx.send_event("paid", {"batch": batch, "amount": 5}, id=event_id)
        return int(n)

    @app.job("payer")
    async def payer(ctx: RunContext) -> Any:
        return await ctx.step.transact("pay", pay, ctx.payload["batch"], ctx.payload["id"])


async def _all(app: StackShift, run_ids: list[str], status: str) -> bool:
    return all([await app.run(r).status() == status for r in run_ids])


async def _waiters(app: StackShift, running_worker: Any, batch: str) -> tuple[list[str], Any]:
    """One waiting run per partition (a worker running them), and the worker."""
    runs = [
        str((await app.start("order", batch, partition_key=key_on(p, batch))).id) for p in range(P)
    ]
    assert sorted(app._core.part_of(r) for r in runs) == list(range(P))
    worker = running_worker(app, concurrency=8)
    await wait_for(lambda: _all(app, runs, "waiting"), 20)
    return runs, worker


async def _drained(app: StackShift, part: int) -> bool:
    return bool(await app.redis.xlen(app._core.part_keys[part].outbox()) == 0)


async def _kicked(app: StackShift) -> list[str]:
    """The runs of the triggered job, on every partition (any status)."""
    page = await app.list_runs(job="kicked", limit=100)
    return [r.id for r in page]


async def _one_kicked(app: StackShift, event_id: str) -> None:
    """Exactly one triggered run, and it got the event."""
    await wait_for(lambda: _kicked_done(app), 20)
    [run] = await _kicked(app)
    assert await app.run(run).result(timeout=10) == event_id


async def _kicked_done(app: StackShift) -> bool:
    runs = await _kicked(app)
    return bool(runs) and await _all(app, runs, "completed")


async def _resumed_once(app: StackShift, runs: list[str]) -> None:
    assert [await app.run(r).result(timeout=15) for r in runs] == [5] * P
    for r in runs:
        info = await app.get_run(r)
        assert info is not None
        assert [e["type"] for e in info.timeline].count("resumed") == 1, info.timeline


async def test_a_commit_resumes_waiters_on_every_partition_and_starts_once(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    told = Told()
    app.add_hook(told)
    at = app._core.part_of_name(STATE)
    runs, _ = await _waiters(app, running_worker, "b1")
    event_id = id_off(at)  # the triggered run starts on another partition's leg
    payer = await app.start("payer", {"batch": "b1", "id": event_id}, partition_key=key_on(at))
    assert await payer.result(timeout=15) == 1
    await _resumed_once(app, runs)
    await wait_for(lambda: _drained(app, at), 20)  # the relay applied the legs again
    await _one_kicked(app, event_id)
    [(_, resumed, started)] = [t for t in told.sent if t[0] == "paid"]
    assert sorted(resumed) == sorted(runs)  # every leg at once: the caller's apply
    assert started == await _kicked(app)
    assert app._core.part_of(started[0]) == route(event_id, P) != at
    assert await app.state.get(STATE) == 1
    info = await app.get_run(str(payer.id))
    assert info is not None
    [entry] = [e for e in info.timeline if e.get("step") == "pay"]
    assert entry["tx"]["events"] == [["paid", event_id]]
    lookers = [await app.start("looker", "b1", partition_key=key_on(p, "l")) for p in range(P)]
    assert [await r.result(timeout=15) for r in lookers] == [event_id] * P  # every log has it


async def test_a_resent_commit_sends_its_event_once(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    at = app._core.part_of_name(STATE)
    scripts = app._core.part_scripts(at)
    real = scripts.transact
    replies: list[str] = []

    async def twice(request: Any, remote: bool = False) -> Any:  # the first reply is lost
        await real(request, remote=remote)
        reply = await real(request, remote=remote)
        replies.append(reply.outcome)
        return reply

    scripts.transact = twice  # type: ignore[method-assign]
    runs, _ = await _waiters(app, running_worker, "b2")
    event_id = id_off(at)
    payer = await app.start("payer", {"batch": "b2", "id": event_id}, partition_key=key_on(at))
    assert await payer.result(timeout=15) == 1
    assert replies == ["done"]  # so the caller leaves the other legs to the relay
    await _resumed_once(app, runs)
    await wait_for(lambda: _drained(app, at), 20)
    await _one_kicked(app, event_id)
    assert await app.state.get(STATE) == 1


async def test_the_relay_alone_delivers_when_the_caller_cannot(
    make_app: Callable[..., StackShift], running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    told = Told()
    app.add_hook(told)
    at = app._core.part_of_name(STATE)

    def fault(point: str) -> None:
        if point == "event_legs":
            raise ConnectionError("the caller's apply dies")

    monkeypatch.setattr(tx_mod, "FAULT", fault)
    runs, worker = await _waiters(app, running_worker, "b3")
    event_id = id_off(at)
    payer = await app.start("payer", {"batch": "b3", "id": event_id}, partition_key=key_on(at))
    assert await payer.result(timeout=15) == 1
    await _resumed_once(app, runs)
    await wait_for(lambda: _drained(app, at), 20)
    await _one_kicked(app, event_id)
    assert worker.upkeep.relay.applied >= P - 1  # one entry per other partition
    [(_, resumed, started)] = [t for t in told.sent if t[0] == "paid"]
    assert resumed == [r for r in runs if app._core.part_of(r) == at]  # this leg only
    assert started == []  # the triggered run's leg is another partition's


async def test_an_event_entry_applied_twice_has_one_effect(
    make_app: Callable[..., StackShift], running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    ns = app._core
    at = ns.part_of_name(STATE)
    tick = Relay.tick

    async def idle(self: Relay) -> int:
        return 0

    monkeypatch.setattr(Relay, "tick", idle)  # no relay but ours
    monkeypatch.setattr(tx_mod, "FAULT", lambda p: 1 / 0 if p == "event_legs" else None)
    runs, _ = await _waiters(app, running_worker, "b4")
    event_id = id_off(at)
    payer = await app.start("payer", {"batch": "b4", "id": event_id}, partition_key=key_on(at))
    assert await payer.result(timeout=15) == 1
    outbox = ns.part_keys[at].outbox()
    entries = await app.redis.xrange(outbox)
    parts = sorted(int(f[b"part"]) for _, f in entries if f[b"a"] == b"event")
    assert parts == [p for p in range(P) if p != at]
    for _, fields in entries:  # each entry twice (a relay that died before its ack)
        await app.redis.xadd(outbox, fields)
    assert await _all(app, [r for r in runs if ns.part_of(r) != at], "waiting")
    assert await _kicked(app) == []
    monkeypatch.setattr(Relay, "tick", tick)
    relay = Relay(ns, "r1")
    await relay.tick()
    assert relay.applied == 2 * (P - 1) and await _drained(app, at)
    await _resumed_once(app, runs)
    await _one_kicked(app, event_id)


@pytest.mark.timeout(30)
async def test_in_a_testenv() -> None:
    """The same on fakeredis, in virtual time (the relay runs in TestEnv's upkeep)."""
    from stackshift_redis.testing import TestEnv

    app = StackShift(redis_url="redis://127.0.0.1:1/0", namespace="shop", partitions=P)
    _jobs(app)
    async with TestEnv(app) as env:
        runs = [str((await app.start("order", "t", partition_key=key_on(p))).id) for p in range(P)]
        await env.advance(1)
        event_id = id_off(app._core.part_of_name(STATE))
        payer = await app.start("payer", {"batch": "t", "id": event_id})
        assert await payer.result(timeout=5) == 1
        assert [await app.run(r).result(timeout=5) for r in runs] == [5] * P
        await env.advance(1)
        [kicked] = await _kicked(app)
        assert await app.run(kicked).result(timeout=5) == event_id
