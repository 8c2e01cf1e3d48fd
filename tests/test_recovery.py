"""Crash recovery on a real Redis: killed workers, lease renewal, global concurrency,
fencing of stale workers, poison runs, heartbeats and consumer hygiene.

Worker processes run `stackshift-worker tests.apps.core_jobs:app` (see tests/apps/core_jobs.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from apps import obs_key
from helpers import observed, spawn_worker, wait_exit, wait_for

from stackshift_redis import RunContext, RunFailed, StackShift
from stackshift_redis._core.keys import GROUP
from stackshift_redis.errors import LeaseLostError

_count = observed


async def _consumers(app: StackShift, queue: str) -> set[str]:
    """The consumers of the queue's stream (of every partition's that exists, with P > 1)."""
    rows: list[Any] = []
    for k in app._core.part_keys:
        if app._core.partitions > 1 and not await app.redis.exists(k.stream(queue)):
            continue
        rows += await app.redis.xinfo_consumers(k.stream(queue), GROUP)
    return {r["name"].decode() if isinstance(r["name"], bytes) else r["name"] for r in rows}


async def _is_live(app: StackShift, worker_id: str) -> bool:
    return await app.redis.zscore(app._core.keys.workers(), worker_id) is not None


async def _feed_until_consumers(
    app: StackShift, job: str, queue: str, ids: Callable[[], Any], n: int
) -> None:
    """Start short runs until `n` workers have consumers (Redis creates a consumer on its
    first delivery)."""
    for i in range(200):
        await (await app.start(job, i, queue_name=queue)).result(timeout=10)
        names = await ids()
        if len(names) == n and set(names) <= await _consumers(app, queue):
            return
    raise AssertionError("workers did not all get deliveries")


_EXPIRE = """
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
"""


async def _expire_lease(app: StackShift, queue: str, run_id: str) -> None:
    """Make the run's current lease expire now and recover the run, as if its worker had
    stalled (retried if the worker renews the lease between the two calls; any worker's
    reclaim may be the one that recovers it)."""
    rk = app._core.keys_of(run_id).run(run_id)
    token = await app.redis.hget(rk, "token")
    assert token is not None
    for _ in range(50):
        leases = app._core.keys_of(run_id).leases(queue)
        await app.redis.eval(_EXPIRE, 2, leases, rk, run_id, token)
        await app._core.scripts_of(run_id).reclaim(queue, app.retention_ms)
        if await app.redis.hget(rk, "token") != token:
            return
    raise AssertionError("the lease could not be expired")


def _timeline_types(info: Any) -> list[str]:
    return [t["type"] for t in info.timeline]


async def test_sigkill_mid_step_recovers_on_other_worker(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    ns = client.namespace
    procs += [spawn_worker(redis_url, ns, "--queue", "recovery") for _ in range(2)]
    run = await client.start("two_steps", queue_name="recovery")

    async def b_pid() -> int:
        raw = await client.redis.get(obs_key(ns, "b_pid"))
        return int(raw) if raw else 0

    await wait_for(b_pid, timeout=15)
    victim = await b_pid()
    assert victim in {p.pid for p in procs}
    os.kill(victim, signal.SIGKILL)

    assert await run.result(timeout=15) == "ab"
    assert await _count(client, "a") == 1  # step A's result was stored: never re-run
    assert await _count(client, "b") == 2  # step B: the killed execution and the recovery
    assert await b_pid() != victim
    info = await client.get_run(run.id)
    assert info is not None and info.status == "completed"
    assert "recovered" in _timeline_types(info)
    assert {s: v["status"] for s, v in info.steps.items()} == {"A": "completed", "B": "completed"}


async def test_run_longer_than_visibility_timeout_is_not_stolen(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    procs += [spawn_worker(redis_url, client.namespace, "--queue", "long") for _ in range(2)]
    # 3x its 2 s lease (renewed every 0.67 s: a loaded machine's stall does not lose it)
    run = await client.start("long_run", 6.0, queue_name="long")
    assert await run.result(timeout=30) == "long"
    assert await _count(client, "execs") == 1
    info = await client.get_run(run.id)
    assert info is not None and info.attempts == 1
    assert "recovered" not in _timeline_types(info)


async def test_queue_concurrency_is_global_across_worker_processes(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    procs += [
        spawn_worker(redis_url, client.namespace, "--queue", "limited", "--concurrency", "10")
        for _ in range(2)
    ]
    runs = await client.start_many("hold", list(range(24)), queue_name="limited")
    results = await asyncio.gather(*(r.result(timeout=18) for r in runs))
    assert sorted(results) == list(range(24))
    assert await _count(client, "held") == 24
    assert await _count(client, "max") == 3  # reached, never exceeded
    assert await _count(client, "current") == 0


async def test_stale_worker_cannot_record_over_new_owner(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    first = make_app()
    second = make_app(namespace=first.namespace)
    started, gate = asyncio.Event(), asyncio.Event()

    @first.job("fenced", queue="f")
    async def slow(ctx: RunContext) -> str:
        started.set()
        await gate.wait()
        return "first"

    @second.job("fenced", queue="f")
    async def fast(ctx: RunContext) -> str:
        return "second"

    run = await first.start("fenced")
    # concurrency 1: once busy, the first worker reads nothing more, so the second gets it
    first.queue("f", visibility_timeout=30)
    stale = running_worker(first, queues=["f"], concurrency=1)
    await asyncio.wait_for(started.wait(), 10)
    token = (await first.redis.hget(first._core.keys_of(run.id).run(run.id), "token")).decode()

    fresh = running_worker(second, queues=["f"])
    await wait_for(lambda: _is_live(second, fresh.id), timeout=10)
    await asyncio.sleep(0.5)  # it is reading the queue now
    # the first worker stalls past its lease (it renews every 10 s): expire it and recover
    await _expire_lease(first, "f", run.id)
    assert await run.result(timeout=10) == "second"

    late = first._core.scripts_of(run.id).complete_call(
        run.id, token, first.serializer.dumps("first"), first.retention_ms
    )
    [result] = await first._core.scripts_of(run.id).run_batch([late])
    assert isinstance(result, LeaseLostError)
    with pytest.raises(LeaseLostError):
        late_step = first._core.scripts_of(run.id).record_step
        await late_step(run.id, token, "late", b"x", "step_completed")

    gate.set()  # the stale attempt ends now (or was already stopped as lost)
    await wait_for(lambda: not stale.running, timeout=10)
    info = await first.get_run(run.id)
    assert info is not None and info.status == "completed" and info.result == "second"
    assert "late" not in info.steps
    assert _timeline_types(info).count("completed") == 1


async def test_a_new_claim_never_reuses_a_lease_token(app: StackShift) -> None:
    """A run taken again after its lease expired gets a new token: the stalled first
    holder is fenced out of every write."""
    app.queue("s", visibility_timeout=30)
    run = await app.start("anything", queue_name="s")
    opts: dict[str, Any] = {"max_deliveries": 5, "retention_ms": 60_000}
    scripts = app._core.scripts_of(run.id)
    [first] = (await scripts.take([("s", 30_000)], 1, **opts)).taken
    assert first.run_id == run.id

    await app.redis.zadd(app._core.keys_of(run.id).leases("s"), {run.id: 0})  # "a" stalls
    assert await scripts.reclaim("s", app.retention_ms) == [run.id]
    [second] = (await scripts.take([("s", 30_000)], 1, **opts)).taken
    assert second.run_id == run.id and second.token != first.token

    stale = scripts.complete_call(
        run.id, first.token, app.serializer.dumps("stale"), app.retention_ms
    )
    [result] = await scripts.run_batch([stale])
    assert isinstance(result, LeaseLostError)  # the stalled worker "a" is fenced out


async def test_run_redelivered_to_same_worker_replaces_stale_attempt(
    app: StackShift, running_worker: Any
) -> None:
    """A worker that stalled past its lease may get the same run again: the stale attempt
    is dropped, and its end must not stop renewals of the new one."""
    app.queue("g", visibility_timeout=2)  # renewed every 0.67 s: a stall does not lose it
    count = 0
    started = asyncio.Event()
    gate = asyncio.Event()

    @app.job("again", queue="g")
    async def again(ctx: RunContext) -> str:
        nonlocal count
        count += 1
        if count == 1:
            started.set()
            await gate.wait()
            return "first"
        await asyncio.sleep(5)  # needs several renewals of a 2 s lease
        return "second"

    run = await app.start("again")
    worker = running_worker(app, queues=["g"], concurrency=4)
    await asyncio.wait_for(started.wait(), 10)
    await _expire_lease(app, "g", run.id)
    await wait_for(lambda: count == 2, timeout=10)
    gate.set()  # the stale attempt (if still running) ends while the new one runs
    assert await run.result(timeout=25) == "second"
    assert count == 2
    await wait_for(lambda: not worker.running, timeout=20)


async def test_poison_run_fails_after_max_deliveries(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    run = await client.start("crash", queue_name="poison")
    env = {"STACKSHIFT_MAX_DELIVERIES": "3"}
    for _ in range(8):  # each worker dies executing the run; the next one recovers it
        proc = spawn_worker(redis_url, client.namespace, "--queue", "poison", env=env)
        procs.append(proc)
        for _ in range(160):
            if proc.poll() is not None or await run.status() == "failed":
                break
            await asyncio.sleep(0.05)
        if await run.status() == "failed":
            break
        assert proc.poll() == 1
    with pytest.raises(RunFailed) as caught:
        await run.result(timeout=20)
    assert caught.value.error["type"] == "PoisonRunError"
    info = await client.get_run(run.id)
    assert info is not None and info.status == "failed" and info.error is not None
    assert info.error["type"] == "PoisonRunError"
    assert "delivered 3 times" in info.error["message"]
    assert await _count(client, "crashes") == 3
    assert info.executions == 3 and info.attempts == 1  # crashes are not failed attempts


async def test_heartbeats_and_consumer_removed_on_graceful_stop(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("noop", queue="hb")
    async def noop(ctx: RunContext) -> int:
        await asyncio.sleep(0.05)
        return 1

    worker = running_worker(app, queues=["hb"], concurrency=1)
    other = running_worker(app, queues=["hb"], concurrency=1)

    async def live() -> list[str]:
        return sorted(await worker.upkeep.live_workers())

    await wait_for(lambda: _len_is(live, 2))
    assert await live() == sorted([worker.id, other.id])
    await _feed_until_consumers(app, "noop", "hb", live, 2)

    await asyncio.wait_for(worker.stop(), 10)
    assert worker.id not in await _consumers(app, "hb")
    assert await app.redis.zscore(app._core.keys.workers(), worker.id) is None
    assert other.id in await _consumers(app, "hb")
    assert await other.upkeep.live_workers() == [other.id]


async def test_dead_worker_consumer_is_cleaned_up(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    ns = client.namespace
    procs += [spawn_worker(redis_url, ns, "--queue", "cli", "--concurrency", "1") for _ in range(2)]

    async def ids() -> list[str]:
        members = await client.redis.zrange(client._core.keys.workers(), 0, -1)
        return sorted(m.decode() for m in members)

    await wait_for(lambda: _len_is(ids, 2), timeout=15)
    await _feed_until_consumers(client, "quick", "cli", ids, 2)
    by_pid = {int(i.split("-")[-2]): i for i in await ids()}
    graceful, killed = procs

    graceful.send_signal(signal.SIGTERM)  # a clean stop leaves the group
    assert await wait_exit(graceful, 30) == 0
    assert by_pid[graceful.pid] not in await _consumers(client, "cli")
    assert await ids() == [by_pid[killed.pid]]

    killed.send_signal(signal.SIGKILL)  # a dead one is removed once its heartbeat expired
    assert await wait_exit(killed, 10) is not None
    dead = by_pid[killed.pid]
    assert dead in await _consumers(client, "cli")
    janitor = client.worker(queues=["cli"])
    await janitor.upkeep.hygiene()
    assert dead in await _consumers(client, "cli")  # its heartbeat is still fresh
    await client.redis.zadd(client._core.keys.workers(), {dead: 1})  # now it expired
    await janitor.upkeep.hygiene()
    assert dead not in await _consumers(client, "cli")


async def _len_is(fn: Callable[[], Any], n: int) -> bool:
    return len(await fn()) == n
