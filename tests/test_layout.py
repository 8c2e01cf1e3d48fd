"""The storage layout check and migration in one process, on real Redis (issue 29):
the gate's cost, what a client meets on a newer layout, a migration run once by two
processes at once, a lost lock, a failing step, the rolling-deploy sweep, and a worker
refused mid-run or stopped while it waits for a migration. Real worker processes, a
SIGKILL halfway and release 6707af1's own worker: tests/test_layout_procs.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from helpers import TEST_PARTITIONS, wait_for
from upgrade.loader import dump_namespace

from stackshift_redis import StackShift
from stackshift_redis._core import layout, migrations
from stackshift_redis._core.migrations import Migration
from stackshift_redis.errors import LayoutError

Items = dict[str, Any]
L = layout.LAYOUT
LP = layout.layout_for(TEST_PARTITIONS)  # the layout of this suite's apps


def counting_step(app: StackShift, n: int, per_call: int = 2, name: str = "count",
                  hook: Callable[[int], Any] | None = None) -> tuple[Migration, Items]:  # fmt: skip
    """A step over the items 0..n-1 (cursor: the next index), counting calls and
    conversions per item in `seen`; `hook(call)` runs at the start of each call."""
    seen: Items = {"calls": 0, "applied": {}, "tries": {}, "ns": []}

    async def convert(ns: Any, cursor: str, limit: int) -> tuple[str | None, int]:
        seen["calls"] += 1
        seen["ns"].append(id(ns))
        if hook is not None:
            await hook(seen["calls"])
        lo = int(cursor or 0)
        for i in range(lo, min(lo + per_call, n)):
            seen["tries"][i] = seen["tries"].get(i, 0) + 1
            key = f"obs:{{{app.namespace}}}:conv"
            if await ns.redis.hsetnx(key, str(i), 1):  # the idempotency check
                seen["applied"][i] = seen["applied"].get(i, 0) + 1
        hi = lo + per_call
        return (str(hi) if hi < n else None), min(per_call, max(0, n - lo))

    return Migration(name, "test items", convert, layout.LAYOUT), seen


async def meta(app: StackShift) -> dict[str, str]:
    raw = await app.redis.hgetall(app._core.keys.meta())
    return {f.decode(): v.decode() for f, v in raw.items()}


async def make_layout1(app: StackShift) -> None:
    """Leave the app's namespace as release 6707af1 would: its data, no meta hash."""
    app.job("noop", lambda ctx: None)
    await app.start("noop", {}, queue_name="lay")
    await app.redis.delete(app._core.keys.meta())


async def test_a_new_namespace_records_the_layout_and_the_gate_costs_one_call_per_check(
    app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    door = app._core.scripts
    original = door.call

    async def spy(name: str, keys: Any, args: Any) -> Any:
        calls.append(name)
        return await original(name, keys, args)

    monkeypatch.setattr(door, "call", spy)
    app.job("noop", lambda ctx: None)
    for i in range(20):
        await app.start("noop", {"i": i}, queue_name="lay")
        await app.state.set(f"k{i}", i)
    assert calls.count("layout") == 1  # one check for 40 writes: nothing per run
    m = await meta(app)
    assert m["layout"] == str(LP) and "next" not in m and f"seen:{LP}" in m


async def test_a_client_on_a_newer_layout_refuses_with_one_line_and_writes_nothing(
    make_app: Callable[..., StackShift],
) -> None:
    first = make_app()
    first.job("noop", lambda ctx: None)
    run = await first.start("noop", {}, queue_name="lay")
    await first.redis.hset(first._core.keys.meta(), "layout", LP + 1)
    before = await _dump(first)
    app = make_app(first.namespace)
    app.job("noop", lambda ctx: None)
    attempts: list[Any] = [
        app.start("noop", {}, queue_name="lay"), app.send_event("e", {}), app.cancel(run.id),
        app.state.set("k", 1), app.state.get("k"), app.state.mark("m", ttl=60),
        app.state.incr("c"), app.state.lock("l", wait=0).acquire(), app.pause_queue("lay"),
    ]  # fmt: skip
    for call in attempts:
        with pytest.raises(LayoutError) as err:
            await call
        text = str(err.value)
        assert "\n" not in text and f"has storage layout {LP + 1}" in text
        assert "does not write to it" in text and "Upgrades and rollbacks" in text
    assert await _dump(app) == before
    info = await app.get_run(run.id)  # reads are not refused
    assert info is not None and info.status == "queued"
    # a migration to a newer layout under way refuses the same way
    await app.redis.hset(app._core.keys.meta(), mapping={"layout": LP, "next": LP + 1})
    late = make_app(first.namespace)
    with pytest.raises(LayoutError, match=f"is being migrated to storage layout {LP + 1}"):
        await late.state.set("k", 1)


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
async def test_two_processes_at_once_migrate_once_and_the_second_check_runs_nothing(
    make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_app()
    await make_layout1(a)
    step, seen = counting_step(a, 9)
    monkeypatch.setattr(migrations, "MIGRATIONS", [step])
    monkeypatch.setattr(layout, "WAIT_S", 0.05)
    b, c = make_app(a.namespace), make_app(a.namespace)
    await asyncio.gather(b._core.layout.ensure(), c._core.layout.ensure())
    assert seen["calls"] == 5 and seen["applied"] == dict.fromkeys(range(9), 1)
    assert len(set(seen["ns"])) == 1  # one of the two processes ran it
    m = await meta(a)
    assert m["layout"] == str(L) and m["mig:count"] == "done" and m["migrated_from"] == "1"
    assert "next" not in m and not await a.redis.exists(a._core.keys.migrating())
    monkeypatch.setattr(layout, "RECHECK_S", 0.0)  # the next call checks again
    await b._core.layout.ensure()
    assert seen["calls"] == 5


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
async def test_a_process_that_lost_the_lock_waits_then_resumes_at_the_saved_cursor(
    app: StackShift, make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    await make_layout1(app)

    async def expire_lock(call: int) -> None:  # as if this process stalled past the TTL
        if call == 3:
            await app.redis.delete(app._core.keys.migrating())

    step, seen = counting_step(app, 10, hook=expire_lock)
    monkeypatch.setattr(migrations, "MIGRATIONS", [step])
    monkeypatch.setattr(layout, "WAIT_S", 0.05)
    await make_app(app.namespace)._core.layout.ensure()
    assert "lost the migration lock" in caplog.text
    assert "resumes at cursor '4'" in caplog.text
    assert seen["applied"] == dict.fromkeys(range(10), 1)  # batch 3 ran twice, converted once
    assert seen["tries"][4] == 2 and seen["calls"] == 6
    assert (await meta(app))["layout"] == str(L)


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
async def test_a_failing_step_releases_the_lock_and_the_next_process_resumes_at_once(
    app: StackShift, make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_layout1(app)

    async def fail(call: int) -> None:
        if call == 2:
            raise RuntimeError("step bug")

    step, seen = counting_step(app, 6, hook=fail)
    monkeypatch.setattr(migrations, "MIGRATIONS", [step])
    with pytest.raises(RuntimeError, match="step bug"):
        await make_app(app.namespace)._core.layout.ensure()
    m = await meta(app)
    assert m["mig:count"] == "2" and m["next"] == str(L) and "layout" not in m
    assert not await app.redis.exists(app._core.keys.migrating())  # no TTL to wait for
    await asyncio.wait_for(make_app(app.namespace)._core.layout.ensure(), 10)  # < lock TTL
    assert seen["applied"] == dict.fromkeys(range(6), 1)
    assert (await meta(app))["layout"] == str(L)


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
async def test_workers_sweep_again_while_an_old_release_worker_is_alive(
    app: StackShift, make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch
) -> None:
    await make_layout1(app)
    step, seen = counting_step(app, 4)
    monkeypatch.setattr(migrations, "MIGRATIONS", [step])
    monkeypatch.setattr(layout, "RECHECK_S", 0.0)
    worker = make_app(app.namespace)._core.layout
    worker.worker = True
    await worker.ensure()
    assert seen["calls"] == 2
    # right after a migration: due (SWEEP_AFTER_S), once per SWEEP_EVERY_S
    assert worker.sweep_due() and await worker.sweep()
    assert seen["calls"] == 4 and seen["applied"] == dict.fromkeys(range(4), 1)
    await worker.ensure()
    assert not worker.sweep_due() and not await worker.sweep()  # swept lately
    # long after the migration, with a worker of release 6707af1 (no layout) alive
    k = app._core.keys
    await app.redis.hset(k.meta(), mapping={"migrated_at": 1, "swept_at": 1})
    await worker.ensure()
    assert worker.found is not None and worker.found.oldest_worker == 0
    assert not worker.sweep_due()
    old = {"host": "h", "pid": 1, "queues": ["lay"], "concurrency": 1, "running": 0}
    await app.redis.zadd(k.workers(), {"old-1": 4_000_000_000_000})
    await app.redis.hset(k.worker_info(), "old-1", json.dumps(old))
    await worker.ensure()
    assert worker.found is not None and worker.found.oldest_worker == 1
    assert worker.sweep_due() and await worker.sweep()
    assert seen["calls"] == 6
    # another process sweeping holds the lock: this one skips
    await app.redis.hset(k.meta(), "swept_at", 1)
    await app.redis.set(k.migrating(), "other", px=5000)
    await worker.ensure()
    assert worker.sweep_due() and not await worker.sweep()


async def test_a_running_worker_stops_on_a_newer_layout_and_writes_nothing_more(
    app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layout, "RECHECK_S", 0.2)
    app.job("noop", lambda ctx: None)
    worker = app.worker(queues=["lay"], poll_interval=0.05, block_ms=100)
    task = asyncio.create_task(worker.run())
    run = await app.start("noop", {}, queue_name="lay")
    await wait_for(lambda: _status(app, run.id, "completed"), 10)
    await app.redis.hset(app._core.keys.meta(), "layout", LP + 1)
    with pytest.raises(LayoutError, match=f"has storage layout {LP + 1}"):
        await asyncio.wait_for(task, 10)
    assert worker.refused is not None
    assert await app.redis.zscore(app._core.keys.workers(), worker.id) is not None  # kept


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
async def test_a_worker_waiting_for_another_process_s_migration_stops_when_asked(
    app: StackShift, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await make_layout1(app)
    step, seen = counting_step(app, 2)
    monkeypatch.setattr(migrations, "MIGRATIONS", [step])
    monkeypatch.setattr(layout, "WAIT_S", 0.05)
    await app.redis.set(app._core.keys.migrating(), "another", px=60_000)
    worker = app.worker(queues=["lay"], poll_interval=0.05, block_ms=100)
    task = asyncio.create_task(worker.run())
    await wait_for(lambda: "another process is migrating" in caplog.text, 10)
    await asyncio.wait_for(worker.stop(), 20)
    await asyncio.wait_for(task, 20)
    assert seen["calls"] == 0
    assert await app.redis.zscore(app._core.keys.workers(), worker.id) is None  # never joined


async def _dump(app: StackShift) -> list[tuple[str, str, Any]]:
    keys = (await dump_namespace(app.redis, app.namespace))["keys"]
    return [(k["key"], k["type"], k["value"]) for k in keys]


async def _status(app: StackShift, run_id: str, status: str) -> bool:
    info = await app.get_run(run_id)
    return info is not None and info.status == status


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
async def test_stackshift_layout_show_migrate_and_sweep(
    app: StackShift, redis_url: str, is_cluster: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from stackshift_redis._ops.cli import main

    base = ["--redis-url", redis_url, "--namespace", app.namespace, *(["--cluster"] * is_cluster)]

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, main, [*base, *args])

    await make_layout1(app)
    step, seen = counting_step(app, 4)
    monkeypatch.setattr(migrations, "MIGRATIONS", [step])
    shown = await cli("layout", "show", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["layout"] == 0
    migrated = await cli("layout", "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert f"migrating the storage layout 1 -> {L} (1 steps)" in migrated.stderr
    assert "migration step count (test items): 4 converted, 2 batches" in migrated.stderr
    assert migrated.stdout.startswith(f"namespace {app.namespace!r}: storage layout {L}")
    swept = await cli("layout", "sweep")
    assert swept.exit_code == 0 and swept.stdout == "swept: 1 steps after layout 1\n"
    assert seen["calls"] == 4 and seen["applied"] == dict.fromkeys(range(4), 1)
    text = (await cli("layout", "show")).stdout
    assert "last migration: from layout 1 at" in text and "last rolling-deploy sweep" in text
    await app.redis.hset(app._core.keys.meta(), "layout", layout.LAYOUT + 1)
    refused = await cli("layout", "migrate")
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    newer = f"Error: namespace {app.namespace!r} has storage layout {L + 1}"
    assert refused.stderr.startswith(newer)
    assert "older than the namespace" in (await cli("layout", "show")).stdout


async def test_a_newer_migration_that_begins_between_check_and_lock_is_refused(
    app: StackShift, make_app: Callable[..., StackShift]
) -> None:
    await make_layout1(app)
    lay = make_app(app.namespace)._core.layout
    found = layout.Found(0, 0, True, 0, 0, 0, 0, 0)  # what its check read
    await app.redis.hset(app._core.keys.meta(), "next", LP + 1)  # then, a newer one
    with pytest.raises(LayoutError, match=f"being migrated to storage layout {LP + 1} by a newer"):
        await lay._migrate(found)
    assert not await app.redis.exists(app._core.keys.migrating())
