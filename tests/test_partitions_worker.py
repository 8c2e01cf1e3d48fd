"""Partitions (issue 28), the worker side: one worker serves runs on every partition. Its
groups and tickets (one blocking read over every partition's streams on standalone Redis,
one per partition on a cluster), its takes, result() waiting on each partition's done
stream, pausing a queue on every partition, one finish batch across partitions, burst mode.
The worker's duties per partition: test_partitions_upkeep.py (which shares the fixtures)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers import wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis._core.jobs import QueueConfig
from stackshift_redis._core.keys import GROUP
from stackshift_redis._core.partitions import route
from stackshift_redis._worker.dispatch import Dispatcher

P = 4


@pytest.fixture
def four(make_app: Callable[..., StackShift]) -> StackShift:
    app = make_app(partitions=P)
    app.job("noop", lambda ctx: None)
    return app


def key_on(part: int) -> str:
    """A partition_key that routes to partition `part` (of P)."""
    return next(f"k{i}" for i in itertools.count() if route(f"k{i}", P) == part)


async def start_on(
    app: StackShift, part: int, job: str, payload: Any = None, *, delay: float | None = None
) -> str:
    """Start a run of `job` on partition `part` (through its partition_key)."""
    run = await app.start(job, payload, partition_key=key_on(part), delay=delay)
    assert run.id is not None and app._core.part_of(run.id) == part
    return run.id


def _dispatcher(app: StackShift, consumer: str = "c1") -> Dispatcher:
    return Dispatcher(app._core, ["default"], consumer, lambda q: QueueConfig(q))


async def test_a_ticket_on_any_partition_wakes_the_worker(four: StackShift) -> None:
    ns = four._core
    dispatcher = _dispatcher(four)
    await dispatcher.setup()
    for k in ns.part_keys:
        [group] = await four.redis.xinfo_groups(k.stream("default"))
        assert group["name"] in (GROUP, GROUP.encode())
    assert await dispatcher.wait(5, 100) is False  # nothing anywhere

    async def later(part: int) -> str:
        await asyncio.sleep(0.3)
        return await start_on(four, part, "noop")

    for part in (3, 1):
        started = asyncio.ensure_future(later(part))
        began = time.monotonic()
        assert await dispatcher.wait(5, 4000) is True
        assert time.monotonic() - began < 3
        assert dispatcher._woken == [part]
        await started
        reply = await dispatcher.take(5)
        assert [ns.part_of(t.run_id) for t in reply.taken] == [part]


async def test_a_wait_is_one_read_on_standalone_and_one_per_partition_on_a_cluster(
    four: StackShift, is_cluster: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = _dispatcher(four)
    await dispatcher.setup()
    calls: list[list[str]] = []
    read = four.redis.xreadgroup

    async def counted(group: str, consumer: str, streams: dict[str, str], **kw: Any) -> Any:
        calls.append(sorted(streams))
        return await read(group, consumer, streams, **kw)

    monkeypatch.setattr(four.redis, "xreadgroup", counted)
    assert await dispatcher.wait(5, 50) is False
    await start_on(four, 2, "noop")
    assert await dispatcher.wait(5, 50) is True and dispatcher._woken == [2]
    streams = [[k.stream("default")] for k in four._core.part_keys]
    if is_cluster:  # one read per partition (CROSSSLOT), each wait
        assert sorted(calls) == sorted(streams * 2)
    else:  # one read over all 4 partitions' streams, each wait
        assert calls == [sorted(s for [s] in streams)] * 2


async def test_a_quiet_wait_cancels_no_read(
    four: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a cluster, the reads of a quiet block end together: none is cancelled (which
    would cost its connection), so an idle worker does not reconnect every block."""
    dispatcher = _dispatcher(four)
    await dispatcher.setup()
    assert await dispatcher.wait(5, 100) is False  # the connections exist from here on
    cancelled: list[int] = []
    read = dispatcher._read_part

    async def counted(part: int, count: int, block_ms: int) -> bool:
        try:
            return await read(part, count, block_ms)
        except asyncio.CancelledError:
            cancelled.append(part)
            raise

    monkeypatch.setattr(dispatcher, "_read_part", counted)
    for _ in range(3):
        assert await dispatcher.wait(5, 100) is False
    assert cancelled == []


async def test_many_wakes_leave_no_connection_behind(four: StackShift) -> None:
    """On a cluster each wait cancels the reads of the partitions that stayed quiet: their
    connections go back to the pool (it holds 100 per node; 150 waits would exhaust it),
    and a wait with a ticket there ends at once (a cancel redis-py lost while connecting
    would hold it for the whole block)."""
    ns = four._core
    dispatcher = _dispatcher(four)
    await dispatcher.setup()
    for i in range(150):
        part = i % P
        await start_on(four, part, "noop")
        began = time.monotonic()
        assert await dispatcher.wait(5, 4000) is True
        assert time.monotonic() - began < 2
        assert dispatcher._woken == [part]
        assert [ns.part_of(t.run_id) for t in (await dispatcher.take(5)).taken] == [part]


async def test_a_take_fills_up_from_several_partitions(four: StackShift) -> None:
    ns = four._core
    ids = {await start_on(four, p, "noop") for p in range(P) for _ in range(2)}
    dispatcher = _dispatcher(four)
    first = await dispatcher.take(5)
    assert len(first.taken) == 5
    assert len({ns.part_of(t.run_id) for t in first.taken}) >= 3
    rest = await dispatcher.take(10)
    assert {t.run_id for t in first.taken + rest.taken} == ids
    assert (await dispatcher.take(10)).taken == []


async def test_one_worker_serves_every_partition(four: StackShift, running_worker: Any) -> None:
    ns = four._core

    @four.job("double")
    async def double(ctx: RunContext) -> int:
        return int(ctx.payload) * 2

    ids = [await start_on(four, i % P, "double", i) for i in range(12)]
    running_worker(four)
    results = await asyncio.gather(*(four.run(i).result(timeout=15) for i in ids))
    assert results == [i * 2 for i in range(12)]
    for run_id in ids:
        assert await four.redis.hget(ns.keys_of(run_id).run(run_id), "status") == b"completed"
    assert {ns.part_of(i) for i in ids} == set(range(P))
    # every partition's done stream told its finishes
    for p, k in enumerate(ns.part_keys):
        assert await four.redis.xlen(k.done()) >= 1, p


async def test_three_workers_run_every_run_once_across_partitions(
    four: StackShift, running_worker: Any
) -> None:
    ns = four._core
    executed: dict[str, int] = {}

    @four.job("count")
    async def count(ctx: RunContext) -> int:
        executed[ctx.run_id] = executed.get(ctx.run_id, 0) + 1
        await asyncio.sleep(0.01)
        return int(ctx.payload)

    for _ in range(3):
        running_worker(four, concurrency=5)
    handles = [await four.start("count", i) for i in range(120)]  # random partitions
    results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert results == list(range(120))
    assert sorted(executed) == sorted(h.id for h in handles if h.id is not None)
    assert set(executed.values()) == {1}
    assert {ns.part_of(i) for i in executed} == set(range(P))


async def test_results_of_runs_on_several_partitions_wait_without_polling(
    four: StackShift, running_worker: Any
) -> None:
    gate = asyncio.Event()

    @four.job("held")
    async def held(ctx: RunContext) -> int:
        await gate.wait()
        return int(ctx.payload)

    ids = [await start_on(four, p, "held", p) for p in (1, 2, 3)]
    running_worker(four)
    waits = [asyncio.ensure_future(four.run(i).result(timeout=15)) for i in ids]
    await asyncio.sleep(0.3)
    assert not any(w.done() for w in waits)
    began = time.monotonic()
    gate.set()
    assert await asyncio.gather(*waits) == [1, 2, 3]
    assert time.monotonic() - began < 3  # told by the done streams, not the 5 s recheck


async def test_pause_and_resume_reach_every_partition(
    four: StackShift, running_worker: Any
) -> None:
    ns = four._core

    @four.job("j")
    async def j(ctx: RunContext) -> int:
        return int(ctx.payload)

    assert await four.pause_queue("default") is True
    assert await four.pause_queue("default") is False
    for k in [ns.keys, *ns.part_keys]:
        assert await four.redis.hexists(k.queue_conf("default"), "paused")
    ids = [await start_on(four, p, "j", p) for p in range(P)]
    running_worker(four)
    await asyncio.sleep(0.5)
    assert [await four.run(i).status() for i in ids] == ["queued"] * P
    assert await four.resume_queue("default") is True
    assert await four.resume_queue("default") is False
    for k in [ns.keys, *ns.part_keys]:
        assert not await four.redis.hexists(k.queue_conf("default"), "paused")
    results = await asyncio.gather(*(four.run(i).result(timeout=15) for i in ids))
    assert results == list(range(P))


async def test_one_batch_finishes_runs_of_several_partitions(four: StackShift) -> None:
    ns = four._core
    ids = [await start_on(four, p, "noop") for p in (0, 1, 3)]
    taken = (await _dispatcher(four).take(5)).taken
    assert sorted(t.run_id for t in taken) == sorted(ids)
    calls = [
        ns.scripts_of(t.run_id).complete_call(t.run_id, t.token, ns.serializer.dumps(1), 60_000)
        for t in taken
    ]
    assert await ns.scripts.run_batch(calls) == [1, 1, 1]
    for run_id in ids:
        assert await four.run(run_id).status() == "completed"


async def test_burst_mode_ends_once_every_partition_is_served(four: StackShift) -> None:
    ran: list[str] = []

    @four.job("j")
    async def j(ctx: RunContext) -> None:
        ran.append(ctx.run_id)

    ids = [await start_on(four, p, "j") for p in (1, 2, 3)]
    worker = four.worker(poll_interval=0.05, block_ms=200)
    await asyncio.wait_for(worker.run(burst=True), 20)
    assert sorted(ran) == sorted(ids)


async def test_a_queue_s_concurrency_limit_holds_across_partitions(
    four: StackShift, running_worker: Any
) -> None:
    ns = four._core
    gate = asyncio.Event()
    running: set[str] = set()
    most = [0]

    four.queue("lim", concurrency=2)

    @four.job("limited", queue="lim")
    async def limited(ctx: RunContext) -> None:
        running.add(ctx.run_id)
        most[0] = max(most[0], len(running))
        await gate.wait()
        running.discard(ctx.run_id)

    ids = [await start_on(four, p % 4, "limited") for p in range(8)]
    running_worker(four, queues=["lim"], concurrency=10)
    running_worker(four, queues=["lim"], concurrency=10)
    await wait_for(lambda: len(running) == 2, 15)
    await asyncio.sleep(0.5)
    assert len(running) == 2 and most == [2]  # permits: 2 over every partition and worker
    permits = await four.redis.zrange(ns.keys.permits("lim"), 0, -1)
    assert len(set(permits) - {b"!starved"}) == 2  # (the other worker was refused)
    for k in ns.part_keys:  # the limit is not copied: take.lua applies none per partition
        assert await four.redis.hget(k.queue_conf("lim"), "concurrency") is None
    gate.set()
    await asyncio.gather(*(four.run(i).result(timeout=20) for i in ids))
    assert most == [2]

    async def given_back() -> bool:  # every permit returned as its run ended
        return await four.redis.zrange(ns.keys.permits("lim"), 0, -1) in ([], [b"!starved"])

    await wait_for(given_back, 10)
