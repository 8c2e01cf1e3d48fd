"""Fault injection on real Redis and real worker processes (issue: fault hardening).

A paused worker (SIGSTOP past its lease) never starts a step another worker completed,
nor overwrites progress; damaged or foreign data fails or drops only what is damaged;
lost replies never double a run; index entries do not outlive their runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

import pytest
from helpers import namespace_keys, observed, spawn_worker, wait_for
from redis.asyncio.cluster import RedisCluster

from stackshift_redis import PayloadError, StackShift
from stackshift_redis._core.partitions import route
from stackshift_redis._core.records import new_run_id
from stackshift_redis._core.scripts import StartRequest
from stackshift_redis.errors import LeaseLostError, RunDataError

OPTS: dict[str, Any] = {"max_deliveries": 5, "retention_ms": 60_000}
PART_KEY = "p0"  # with partitions: the runs of the foreign entries' test go to its partition


@pytest.mark.parametrize("with_progress", [False, True])
async def test_a_paused_worker_never_reruns_a_completed_step(
    make_app: Any, redis_server: Any, procs: list[Any], with_progress: bool
) -> None:
    app: StackShift = make_app()
    # a gap of 4 s between the steps: the test sees every step A and stops the worker
    # within it, also on a loaded machine
    runs = [
        await app.start("paused_steps", {"gap": 4.0, "progress": with_progress}, queue_name="pause")
        for _ in range(3)
    ]
    paused = spawn_worker(redis_server.url, app.namespace, "-q", "pause", "-c", "4")
    procs.append(paused)
    await wait_for(lambda: _count(app, "a", 3), timeout=15)  # every run did step A
    paused.send_signal(signal.SIGSTOP)  # between steps A and B, past its 1 s lease
    try:
        procs.append(spawn_worker(redis_server.url, app.namespace, "-q", "pause"))
        for run in runs:
            assert await run.result(timeout=20) == "done"  # recovered and finished
        assert await observed(app, "b") == 3
    finally:
        paused.send_signal(signal.SIGCONT)
    await asyncio.sleep(5.0)  # the paused worker wakes: its gaps (4 s) are long over
    assert await observed(app, "b") == 3, "a paused worker ran step B again"
    for run in runs:
        info = await app.get_run(run.id)
        assert info is not None and info.status == "completed"
        if with_progress:  # written by the recovering worker only, never the stale one
            assert info.progress == f"late from {procs[-1].pid}"


async def _count(app: StackShift, name: str, n: int) -> bool:
    return await observed(app, name) >= n


async def test_progress_of_a_stale_worker_never_recreates_an_expired_run(
    make_app: Any,
) -> None:
    app: StackShift = make_app(retention=1)
    run = await app.start("j", queue_name="s")
    scripts = app._core.scripts_of(run.id)
    [taken] = (await scripts.take([("s", 30_000)], 1, **OPTS)).taken
    done = scripts.complete_call(run.id, taken.token, app.serializer.dumps(1), 1000)
    assert await scripts.run_batch([done]) == [1]
    with pytest.raises(LeaseLostError):  # finished: fenced out
        await scripts.progress(run.id, taken.token, app.serializer.dumps(0.5))
    await asyncio.sleep(1.2)
    assert await app.get_run(run.id) is None
    with pytest.raises(LeaseLostError):  # expired: nothing re-created
        await scripts.progress(run.id, taken.token, app.serializer.dumps(0.9))
    assert await app.redis.exists(app._core.keys_of(run.id).run(run.id)) == 0


async def test_start_refuses_a_payload_that_does_not_deserialize(app: StackShift) -> None:
    app.job("j", lambda ctx: None)
    with pytest.raises(PayloadError, match="does not deserialize"):
        await app.start("j", {(1, 2): "tuple key"})
    assert await namespace_keys(app) == []


async def test_an_undecodable_run_fails_alone(app: StackShift, running_worker: Any) -> None:
    app.job("j", lambda ctx: ctx.payload)
    good = await app.start_many("j", list(range(5)))
    bad_id = app._core.new_run_id(app._core.partitions - 1)  # on the last partition
    request = StartRequest(job="j", queue="default", idem_ttl_ms=1000)
    # stored by another client whose serializer differs
    await app._core.scripts_of(bad_id).start(request, [(bad_id, None, b"\xc1")])
    more = await app.start_many("j", list(range(5, 10)))
    running_worker(app)
    assert [await r.result(timeout=10) for r in good + more] == list(range(10))
    await wait_for(lambda: _raw_status_is(app, bad_id, b"failed"), timeout=10)
    error = json.loads(await app.redis.hget(app._core.keys_of(bad_id).run(bad_id), "error"))
    assert error["type"] == "PayloadError"
    assert (
        await app.redis.hget(app._core.keys_of(bad_id).run(bad_id), "attempts") == b"1"
    )  # no retries
    with pytest.raises(RunDataError, match="payload"):  # get_run says what is damaged
        await app.get_run(bad_id)


async def _raw_status_is(app: StackShift, run_id: str, status: bytes) -> bool:
    return bool(await app.redis.hget(app._core.keys_of(run_id).run(run_id), "status") == status)


async def _status_is(app: StackShift, run_id: str, status: str) -> bool:
    info = await app.get_run(run_id)
    return info is not None and info.status == status


async def test_foreign_entries_are_dropped_and_the_rest_runs(
    app: StackShift, running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app.job("j", lambda ctx: ctx.payload)
    k = app._core.part_keys[route(PART_KEY, app._core.partitions)]  # the runs' partition
    await app.redis.xadd(k.stream("default"), {"garbage": "\x00\xff"})  # not a ticket
    await app.redis.zadd(k.ready("default", "0"), {"not-a-run": 0})  # not a run
    await app.redis.zadd(k.ring("default"), {"0": 0})
    runs = await app.start_many("j", [1, 2, 3], partition_key=PART_KEY)
    with caplog.at_level(logging.ERROR, logger="stackshift.worker"):
        running_worker(app)
        assert [await r.result(timeout=10) for r in runs] == [1, 2, 3]
    assert any("not-a-run" in r.getMessage() for r in caplog.records)
    assert await app.redis.zscore(k.ready("default", "0"), "not-a-run") is None


async def test_a_damaged_field_fails_the_run_visibly(app: StackShift, running_worker: Any) -> None:
    app.job("j", lambda ctx: "ran")
    victim = await app.start("j")
    other = await app.start("j")
    await app.redis.hset(app._core.keys_of(victim.id).run(victim.id), "deliveries", "garbage")
    running_worker(app)
    assert await other.result(timeout=10) == "ran"
    await wait_for(lambda: _status_is(app, victim.id, "failed"), timeout=10)
    info = await app.get_run(victim.id)
    assert info is not None and info.error is not None
    assert info.error["type"] == "RunDataError" and "deliveries" in info.error["message"]


async def test_a_queued_run_that_lost_its_ready_entry_is_requeued(
    app: StackShift, running_worker: Any
) -> None:
    app.job("j", lambda ctx: "ran")
    run = await app.start("j")
    ready = app._core.keys_of(run.id).ready("default", "0")
    assert await app.redis.zrem(ready, run.id) == 1  # lost mid-crash
    running_worker(app)  # its reconcile duty (first round at start) finds the run
    assert await run.result(timeout=10) == "ran"
    info = await app.get_run(run.id)
    assert info is not None and "requeued" in [e["type"] for e in info.timeline]


async def test_get_run_on_a_damaged_record_raises_a_library_error(app: StackShift) -> None:
    app.job("j", lambda ctx: None)
    run = await app.start("j")
    await app.redis.hset(app._core.keys_of(run.id).run(run.id), "payload", b"\xc1")
    with pytest.raises(RunDataError, match=run.id):
        await app.get_run(run.id)
    await app.redis.hset(app._core.keys_of(run.id).run(run.id), "status", "garbage")
    [listed] = await app.list_runs()  # a page lists it as damaged (tests/test_readback.py)
    assert listed.id == run.id and listed.damaged is not None


async def test_index_entries_do_not_outlive_their_runs(make_app: Any, running_worker: Any) -> None:
    app: StackShift = make_app(retention=1)
    app.job("j", lambda ctx: None)
    worker = running_worker(app)
    await wait_for(lambda: _worker_ready(app), timeout=10)
    warm = await app.start_many("j", [None] * 50)  # steady state: every script loaded
    await wait_for(lambda: _status_is(app, warm[-1].id, "completed"), timeout=30)
    await asyncio.sleep(1.2)
    await worker.upkeep.trim()
    structure = [
        app._core.keys.queue_stat("default"),
        app._core.keys.take(worker.id),
    ]  # per queue/worker
    baseline = set(await namespace_keys(app)) | {k.encode() for k in structure}
    warm = await app.start_many("j", [None] * 20)  # loads every script the flow uses
    await wait_for(lambda: _all_finished(app, warm), timeout=30)
    await asyncio.sleep(1.2)
    await worker.upkeep.trim()
    entries = await _entries(app, baseline)
    before = await _used_memory(app)
    runs = await app.start_many("j", [None] * 2000)
    await wait_for(lambda: _status_is(app, runs[-1].id, "completed"), timeout=30)
    await wait_for(lambda: _all_finished(app, runs), timeout=30)
    during = await _used_memory(app)
    await asyncio.sleep(1.2)  # every run expired
    await worker.upkeep.trim()  # what the worker does every trim_every (1 s here)
    left = set(await namespace_keys(app))
    assert left <= baseline, sorted(left - baseline)
    after = await _used_memory(app)
    # no entry of a run is left in the keys that outlive runs (indexes, queues, streams)
    grown = {k: n for k, n in (await _entries(app, baseline)).items() if n > entries[k] + 20}
    assert not grown, {k: (entries[k], n) for k, n in grown.items()}
    if not isinstance(app.redis, RedisCluster):  # on a cluster: several servers' noise
        assert after - before < (during - before) / 10, (before, during, after)


async def _entries(app: StackShift, keys: set[bytes]) -> dict[bytes, int]:
    """Entries of each collection key (strings, such as a taker's last take, are left out)."""
    r, out = app.redis, {}
    length = {"zset": r.zcard, "set": r.scard, "hash": r.hlen, "stream": r.xlen, "list": r.llen}
    for key in keys:
        size = length.get((await r.type(key)).decode())
        out[key] = await size(key) if size else 0
    return out


async def _worker_ready(app: StackShift) -> bool:
    return bool(await app.redis.exists(app._core.keys.workers()))


async def _all_finished(app: StackShift, runs: list[Any]) -> bool:
    """Every run completed, or completed and expired already (a short retention)."""
    async with app.redis.pipeline(transaction=False) as pipe:
        for r in runs:
            pipe.hget(app._core.keys_of(r.id).run(r.id), "status")
        statuses = await pipe.execute()
    return all(s in (b"completed", None) for s in statuses)


async def _used_memory(app: StackShift) -> int:
    from helpers import used_memory

    return await used_memory(app)


async def test_a_resent_start_is_not_a_duplicate_of_itself(app: StackShift) -> None:
    run = (new_run_id(), "order-1", app.serializer.dumps(None))
    request = StartRequest(job="j", queue="q", idem_ttl_ms=60_000)
    first = await app._core.scripts.start(request, [run])
    again = await app._core.scripts.start(request, [run])
    assert first == again == [(run[0], False, None)]
    other = (new_run_id(), "order-1", app.serializer.dumps(None))
    assert await app._core.scripts.start(request, [other]) == [(run[0], True, None)]
    assert await app.redis.zcard(app._core.keys.ready("q", "0")) == 1
