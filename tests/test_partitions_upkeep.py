"""Partitions (issue 28), the worker's duties on every partition: promotion of retries
and delays, lease renewal and recovery (an expired lease, a killed worker process), the
hand-back on stop, cancel notices on each partition's control stream, reconcile, consumer
hygiene and index trimming. Fixtures and helpers: test_partitions_worker.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from apps import obs_key
from helpers import cancel_flagged, observed, spawn_worker, wait_for
from test_partitions_worker import P, _dispatcher, four, key_on, start_on

from stackshift_redis import RunCancelled, RunContext, StackShift
from stackshift_redis._core.keys import GROUP

__all__ = ["four"]  # the fixture, shared with test_partitions_worker.py
OPTS: dict[str, Any] = {"max_deliveries": 5, "retention_ms": 60_000}


async def test_retries_and_delays_on_another_partition(
    four: StackShift, running_worker: Any
) -> None:
    @four.job("flaky", retries=2, backoff=0.05)
    async def flaky(ctx: RunContext) -> int:
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt}")
        return ctx.attempt

    @four.job("later")
    async def later(ctx: RunContext) -> float:
        return time.time()

    flaky_id = await start_on(four, 2, "flaky")
    began = time.time()
    later_id = await start_on(four, 3, "later", delay=0.4)
    running_worker(four)
    assert await four.run(flaky_id).result(timeout=15) == 3
    info = await four.get_run(flaky_id)
    assert info is not None and info.attempts == 3
    ran_at = await four.run(later_id).result(timeout=15)
    assert ran_at - began >= 0.35


async def test_an_expired_lease_is_recovered_on_another_partition(
    four: StackShift, running_worker: Any
) -> None:
    ns = four._core

    @four.job("j")
    async def j(ctx: RunContext) -> int:
        return ctx.attempt

    run_id = await start_on(four, 3, "j")
    # a worker that took the run and died: a short lease, never renewed
    dead = await ns.part_scripts(3).take([("default", 300)], 1, taker="dead", **OPTS)
    assert [t.run_id for t in dead.taken] == [run_id]
    assert await four.redis.zscore(ns.part_keys[3].leases("default"), run_id) is not None
    running_worker(four)
    assert await four.run(run_id).result(timeout=15) == 1  # a lost lease is no failed attempt
    assert await four.redis.hget(ns.keys_of(run_id).run(run_id), "expired") == b"1"


async def test_a_queued_run_that_lost_its_ready_entry_is_requeued_on_its_partition(
    four: StackShift, running_worker: Any
) -> None:
    ns = four._core
    four.job("j", lambda ctx: "ran")
    run_id = await start_on(four, 3, "j")
    assert await four.redis.zrem(ns.part_keys[3].ready("default", "0"), run_id) == 1
    running_worker(four)  # its reconcile duty (first round at start) finds the run
    assert await four.run(run_id).result(timeout=15) == "ran"
    info = await four.get_run(run_id)
    assert info is not None and "requeued" in [e["type"] for e in info.timeline]


async def test_a_stopped_worker_hands_back_runs_on_their_partitions(
    four: StackShift, running_worker: Any
) -> None:
    ns = four._core
    started: set[str] = set()

    @four.job("forever")
    async def forever(ctx: RunContext) -> None:
        started.add(ctx.run_id)
        await asyncio.sleep(60)

    ids = [await start_on(four, p, "forever") for p in (1, 3)]
    worker = running_worker(four, grace=0.1)
    await wait_for(lambda: started == set(ids), 15)
    await asyncio.wait_for(worker.stop(force=True), 15)
    for run_id in ids:  # ready again at once, not after the lease's 30 s
        leases = ns.keys_of(run_id).leases("default")
        assert await four.redis.zscore(leases, run_id) is None
        assert await four.run(run_id).status() == "queued"


async def test_cancel_reaches_a_running_run_on_another_partition(
    four: StackShift, running_worker: Any
) -> None:
    started, proceed = asyncio.Event(), asyncio.Event()

    @four.job("long")
    async def long(ctx: RunContext) -> None:
        await ctx.step.run("one", lambda: 1)
        started.set()
        await proceed.wait()
        await ctx.step.run("two", lambda: 2)

    run_id = await start_on(four, 2, "long")
    worker = running_worker(four)
    await asyncio.wait_for(started.wait(), 15)
    assert await four.cancel(run_id) is True
    # read from partition 2's control stream (lease renewal would tell only after 10 s)
    await wait_for(lambda: cancel_flagged(worker, run_id), 5)
    proceed.set()
    with pytest.raises(RunCancelled):
        await four.run(run_id).result(timeout=15)


async def test_hygiene_drops_a_gone_consumer_on_every_partition(four: StackShift) -> None:
    ns = four._core
    await _dispatcher(four).setup()
    for p, k in enumerate(ns.part_keys):  # a worker that read tickets once, then vanished
        await start_on(four, p, "noop")
        await four.redis.xreadgroup(GROUP, "ghost", {k.stream("default"): ">"}, noack=True)

    async def consumers(p: int) -> set[str]:
        found = await four.redis.xinfo_consumers(ns.part_keys[p].stream("default"), GROUP)
        return {c["name"].decode() if isinstance(c["name"], bytes) else c["name"] for c in found}

    assert all(["ghost" in await consumers(p) for p in range(P)])
    worker = four.worker(queues=["default"])
    await worker.upkeep.hygiene()
    assert not any(["ghost" in await consumers(p) for p in range(P)])


async def test_expired_index_entries_are_trimmed_on_every_partition(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P, retention=1)
    ns = app._core
    app.job("j", lambda ctx: None)
    ids = [await start_on(app, p, "j") for p in (1, 2, 3)]
    worker = running_worker(app)
    await asyncio.gather(*(app.run(i).result(timeout=15) for i in ids))
    for run_id in ids:
        assert await app.redis.zscore(ns.keys_of(run_id).idx_status("completed"), run_id)
    await asyncio.sleep(1.2)
    await worker.upkeep.trim()
    for run_id in ids:
        assert await app.redis.zscore(ns.keys_of(run_id).idx_status("completed"), run_id) is None
        assert await app.redis.zscore(ns.keys_of(run_id).ord_status("completed"), run_id) is None


PROC_ENV = {"STACKSHIFT_TEST_PARTITIONS": str(P)}


async def test_a_killed_worker_process_s_run_is_recovered_on_its_partition(
    four: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    ns = four.namespace
    procs += [spawn_worker(redis_url, ns, "--queue", "recovery", env=PROC_ENV) for _ in range(2)]
    run = await four.start("two_steps", queue_name="recovery", partition_key=key_on(3))
    assert run.id is not None and four._core.part_of(run.id) == 3

    async def b_pid() -> int:
        raw = await four.redis.get(obs_key(ns, "b_pid"))
        return int(raw) if raw else 0

    await wait_for(b_pid, timeout=20)
    victim = await b_pid()
    assert victim in {p.pid for p in procs}
    os.kill(victim, signal.SIGKILL)
    assert await run.result(timeout=20) == "ab"  # the other process reclaims it (2 s lease)
    assert await observed(four, "a") == 1 and await observed(four, "b") == 2
    info = await four.get_run(run.id)
    assert info is not None and "recovered" in [t["type"] for t in info.timeline]


async def test_a_run_longer_than_its_lease_keeps_it_on_its_partition(
    four: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    procs += [spawn_worker(redis_url, four.namespace, "--queue", "long", env=PROC_ENV)]
    procs += [spawn_worker(redis_url, four.namespace, "--queue", "long", env=PROC_ENV)]
    # 3x its 2 s lease: renewed on partition 2 every 0.67 s, never reclaimed
    run = await four.start("long_run", 6.0, queue_name="long", partition_key=key_on(2))
    assert await run.result(timeout=40) == "long"
    assert await observed(four, "execs") == 1
