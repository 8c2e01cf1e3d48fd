"""A transactional step's starts with partitions (P=4, real Redis and cluster): a start its
flow-control or idempotency key routes off the commit's partition is an outbox entry
'tx_start' the commit writes in the same script call (lua/transact.lua); the caller
applies it at once on the run's partition, the relay again (changing nothing) or alone
(when the caller could not). The apply keeps its outcome (lua/apply_outbox.lua), so each
start has its effect once; an idempotency key that has a run dedupes to it, as start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import wait_for

from stackshift_redis import Concurrency, RunContext, Singleton, StackShift, StateTx
from stackshift_redis._attempt import transact as tx_mod
from stackshift_redis._core.partitions import route
from stackshift_redis._core.routing import SEP, idempotency_partition
from stackshift_redis._worker.relay import Relay

P = 4
STATE = "{tx}:n"  # the commit's state: the commit runs on its partition


def key_on(part: int, off: bool = False) -> str:
    """A partition_key that routes to `part` (`off`: anywhere else)."""
    return next(k for i in range(1000) if (route(k := f"pk{i}", P) == part) != off)


def account_off(part: int) -> str:
    """A concurrency key value of job 'acct' routing its run off partition `part`."""
    return next(a for i in range(1000) if route(f"acct{SEP}{(a := f'a{i}')}", P) != part)


def idem_off(part: int) -> str:
    """An idempotency key routing a run of job 'mail' off partition `part`."""
    return next(k for i in range(1000) if idempotency_partition("mail", k := f"m{i}", P) != part)


def _jobs(app: StackShift) -> None:
    @app.job("acct", concurrency=Concurrency(2, key="account"))
    async def acct(ctx: RunContext) -> str:
        return f"synced {ctx.payload['account']}"

    @app.job("mail")
    async def mail(ctx: RunContext) -> Any:
        return ctx.payload

    async def go(tx: StateTx, account: str, idem: str) -> int:
        n = await tx.incr(STATE)
        tx.start("acct", {"account": account})
        tx.start("mail", {"to": account}, idempotency_key=idem)
        tx.start("mail", {"near": True})  # no key: beside the commit, made by it
        return int(n)

    @app.job("stepper")
    async def stepper(ctx: RunContext) -> Any:
        return await ctx.step.transact("go", go, ctx.payload["account"], ctx.payload["idem"])


async def _runs(app: StackShift, job: str) -> list[str]:
    return [r.id for r in await app.list_runs(job=job, limit=100)]


async def _drained(app: StackShift) -> bool:
    ns = app._core
    return all([await app.redis.xlen(ns.part_keys[p].outbox()) == 0 for p in range(P)])


async def _started_once(app: StackShift, at: int, account: str, stepper: str) -> list[str]:
    """One run of each start, completed, the keyed ones off partition `at`, the unkeyed one
    on it, all listed by the step's timeline entry; their ids (acct, keyed mail)."""
    [acct] = await _runs(app, "acct")
    assert await app.run(acct).result(timeout=15) == f"synced {account}"
    mails = await _runs(app, "mail")
    assert len(mails) == 2
    results = {r: await app.run(r).result(timeout=15) for r in mails}
    [keyed] = [r for r, v in results.items() if v == {"to": account}]
    [near] = [r for r, v in results.items() if v == {"near": True}]
    ns = app._core
    assert ns.part_of(acct) != at and ns.part_of(keyed) != at and ns.part_of(near) == at
    info = await app.get_run(stepper)
    assert info is not None
    [entry] = [e for e in info.timeline if e.get("step") == "go"]
    assert sorted(entry["tx"]["started"]) == sorted([acct, keyed, near])
    assert await app.state.get(STATE) == 1
    return [acct, keyed]


async def test_keyed_starts_on_other_partitions_start_at_once_and_once(
    make_app: Callable[..., StackShift], running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    at = app._core.part_of_name(STATE)

    async def no_relay(self: Relay) -> int:
        return 0

    monkeypatch.setattr(Relay, "tick", no_relay)  # only the caller's apply can start them
    running_worker(app, concurrency=8)
    account, idem = account_off(at), idem_off(at)
    stepper = await app.start(
        "stepper", {"account": account, "idem": idem}, partition_key=key_on(at)
    )
    assert await stepper.result(timeout=15) == 1
    runs = await _started_once(app, at, account, str(stepper.id))
    assert not await _drained(app)  # the durable copies are still there
    monkeypatch.undo()
    relay = Relay(app._core, "late")
    assert await relay.tick() == 0 and relay.applied == 2  # applied again: nothing changes
    assert await _started_once(app, at, account, str(stepper.id)) == runs
    assert await _drained(app)


async def test_a_resent_remote_commit_starts_nothing_twice(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    at = app._core.part_of_name(STATE)
    scripts = app._core.part_scripts(at)
    real = scripts.transact
    replies: list[str] = []

    async def twice(request: Any, remote: bool = False) -> Any:  # the first reply is lost
        assert remote  # the step's run lives on another partition than its state
        await real(request, remote=remote)
        reply = await real(request, remote=remote)
        replies.append(reply.outcome)
        return reply

    scripts.transact = twice  # type: ignore[method-assign]
    running_worker(app, concurrency=8)
    account, idem = account_off(at), idem_off(at)
    pk = key_on(at, off=True)
    stepper = await app.start("stepper", {"account": account, "idem": idem}, partition_key=pk)
    assert await stepper.result(timeout=15) == 1
    assert replies == ["done"]  # so the caller left the starts to the relay
    await wait_for(lambda: _drained(app), 20)
    await wait_for(lambda: _runs(app, "acct"), 20)
    await _started_once(app, at, account, str(stepper.id))


async def test_the_relay_alone_starts_them_when_the_caller_cannot(
    make_app: Callable[..., StackShift], running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    at = app._core.part_of_name(STATE)
    faults: list[str] = []

    def fault(point: str) -> None:
        if point == "far_starts":
            faults.append(point)
            raise ConnectionError("the caller's apply dies")

    monkeypatch.setattr(tx_mod, "FAULT", fault)
    running_worker(app, concurrency=8)
    account, idem = account_off(at), idem_off(at)
    stepper = await app.start(
        "stepper", {"account": account, "idem": idem}, partition_key=key_on(at)
    )
    assert await stepper.result(timeout=15) == 1
    assert faults == ["far_starts"]
    await wait_for(lambda: _drained(app), 20)
    await wait_for(lambda: _runs(app, "acct"), 20)
    await _started_once(app, at, account, str(stepper.id))


async def _entry(app: StackShift, part: int) -> tuple[bytes, dict[bytes, bytes]]:
    [(entry_id, fields)] = await app.redis.xrange(app._core.part_keys[part].outbox())
    return entry_id, fields


async def test_an_entry_applied_twice_makes_one_run_and_a_key_dedupes(
    make_app: Callable[..., StackShift], running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(partitions=P)
    _jobs(app)
    ns = app._core
    at = ns.part_of_name(STATE)
    account, idem = account_off(at), idem_off(at)
    first = await app.start("mail", {"first": True}, idempotency_key=idem)  # the key's run

    async def no_relay(self: Relay) -> int:
        return 0

    def fault(point: str) -> None:
        if point == "far_starts":
            raise ConnectionError("the caller's apply dies")

    monkeypatch.setattr(Relay, "tick", no_relay)
    monkeypatch.setattr(tx_mod, "FAULT", fault)  # the entries stay, unapplied
    running_worker(app, concurrency=8)
    stepper = await app.start(
        "stepper", {"account": account, "idem": idem}, partition_key=key_on(at)
    )
    assert await stepper.result(timeout=15) == 1
    assert await _runs(app, "acct") == []
    entries = await app.redis.xrange(ns.part_keys[at].outbox())
    assert [f[b"a"] for _, f in entries] == [b"tx_start", b"tx_start"]
    applied = []
    for _ in range(2):  # each entry twice (a relay that died before its ack)
        for _, fields in entries:
            run = fields[b"run"].decode()
            rest = [x for k, v in fields.items() if k not in (b"a", b"run") for x in (k, v)]
            applied.append(
                await ns.scripts_of(run).apply_outbox(
                    "tx_start", run, rest, ns.settings.retention_ms
                )
            )
    assert applied == [True, True, False, False]
    [acct] = await _runs(app, "acct")
    assert await app.run(acct).result(timeout=15) == f"synced {account}"
    mails = await _runs(app, "mail")  # the key's run, and the one started beside the commit
    assert len(mails) == 2 and str(first.id) in mails
    keyed = next(f[b"run"].decode() for _, f in entries if f[b"job"] == b"mail")
    assert await app.get_run(keyed) is None  # deduplicated: never made
    assert await app.redis.get(ns.keys_of(keyed).tx_start(keyed)) == str(first.id).encode()
    assert await app.run(str(first.id)).result(timeout=15) == {"first": True}


async def test_a_skipped_start_stays_skipped_when_applied_again(
    make_app: Callable[..., StackShift], running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(partitions=P)
    ns = app._core
    at = ns.part_of_name(STATE)
    key = next(k for i in range(1000) if route(f"solo{SEP}{(k := f's{i}')}", P) != at)

    @app.job("solo", singleton=Singleton(key="k"))
    async def solo(ctx: RunContext) -> None: ...

    async def go(tx: StateTx) -> int:
        tx.start("solo", {"k": key})
        return int(await tx.incr(STATE))

    @app.job("stepper")
    async def stepper(ctx: RunContext) -> Any:
        return await ctx.step.transact("go", go)

    async def no_relay(self: Relay) -> int:
        return 0

    monkeypatch.setattr(Relay, "tick", no_relay)
    older = await app.start("solo", {"k": key}, delay=60)  # unfinished: a new start is skipped
    running_worker(app, concurrency=4)
    run = await app.start("stepper", partition_key=key_on(at))
    assert await run.result(timeout=15) == 1
    [(_, fields)] = await app.redis.xrange(ns.part_keys[at].outbox())
    far = fields[b"run"].decode()
    assert ns.part_of(far) == ns.part_of(str(older.id)) != at
    assert await app.get_run(far) is None  # skipped by the caller's apply: the singleton's
    assert await app.cancel(str(older.id)) is True  # a start now would be made...
    monkeypatch.undo()
    assert await Relay(ns, "late").tick() == 0  # ...but the entry was applied already
    assert await app.get_run(far) is None
    assert [r.id for r in await app.list_runs(job="solo", limit=10)] == [str(older.id)]
