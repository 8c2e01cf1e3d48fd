"""Schedules with partitions (P = 4) on a real Redis (standalone and cluster): a tick's run
lands on a partition while the schedule stays on the namespace's tag. Exactly one run per
tick with several workers firing at once and after a crash between creating the runs and
advancing the schedule; overlap across partitions; trigger; pause, resume, delete; get and
list; real workers completing interval and cron ticks.

Like tests/test_schedules.py, most tests drive `ScheduleDuty` by hand with no worker, so
every run a tick creates stays visible (queued) and the outcome is deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from helpers import namespace_keys, wait_for
from redis.crc import key_slot

from stackshift_redis import Concurrency, RunContext, StackShift
from stackshift_redis._client.schedule_parts import tick_run_id
from stackshift_redis._client.schedules import ScheduleDuty, server_ms
from stackshift_redis._core.cron import jitter_ms
from stackshift_redis._core.keys import parse
from stackshift_redis._core.partitions import partition_of
from stackshift_redis._core.scripts import Scripts
from stackshift_redis.errors import ScheduleNotFoundError

P = 4


@pytest.fixture
def part_app(make_app: Callable[..., StackShift]) -> StackShift:
    return make_app(partitions=P)


async def _runs(app: StackShift, job: str) -> list[dict[str, str]]:
    """Every run of `job` on every partition (its hash, plus `id` and `part`), by id. Each
    run must be on the partition its id names."""
    ns = app._core
    out: list[dict[str, str]] = []
    for p, k in enumerate(ns.part_keys):
        async for key in app.redis.scan_iter(match=k.prefix + "run:*", count=1000):
            rid = key.decode()[len(k.prefix) + 4 :]
            assert ns.part_of(rid) == p, (rid, p)
            h = await app.redis.hgetall(key)
            run = {a.decode(): b.decode(errors="replace") for a, b in h.items()}
            if run.get("job") == job:
                out.append({**run, "id": rid, "part": str(p)})
    return sorted(out, key=lambda r: r["id"])


def _ticks(runs: list[dict[str, str]]) -> list[int]:
    return sorted(int(r["scheduled_at"]) for r in runs)


async def _make_due(app: StackShift, name: str, ticks_ago: int) -> int:
    """Set an interval schedule's next fire to its tick `ticks_ago` intervals before now."""
    ns = app._core
    every = int(await app.redis.hget(ns.keys.schedule(name), "every"))
    tick = (await server_ms(ns) // every - ticks_ago) * every
    await app.redis.hset(ns.keys.schedule(name), "next", tick)
    await app.redis.zadd(ns.keys.schedules(), {name: tick})
    return tick


async def _no_run_on_the_namespace_tag(app: StackShift) -> None:
    """Runs, their indexes and idempotency keys live on partitions only; and no tick left
    a key of its own (an idempotency key)."""
    ns = app._core
    for key in await namespace_keys(app):
        k = key.decode()
        for keys in [ns.keys, *ns.part_keys]:
            shape = parse(keys.prefix, k)
            if shape is not None:
                assert shape[0] != "idem", k
                if keys is ns.keys:
                    assert shape[0] not in ("run", "idx_job_status", "ord_status"), k


def test_a_tick_run_id_is_the_same_everywhere_and_names_its_partition() -> None:
    tick = 1_796_457_600_000
    rid = tick_run_id("nightly", tick, 3)
    assert rid == tick_run_id("nightly", tick, 3) and len(rid) == 26 and rid.endswith("-3")
    assert partition_of(rid, P) == 3 and int(rid[:11], 16) == tick  # sorts by its tick
    others = {tick_run_id("nightly", tick + 1000, 3), tick_run_id("weekly", tick, 3)}
    assert rid not in others and len(others) == 2
    assert tick_run_id("nightly", tick, 3) < tick_run_id("a", tick + 1, 0)


async def test_ticks_make_runs_on_partitions(part_app: StackShift) -> None:
    app, ns = part_app, part_app._core
    names = [f"s{i}" for i in range(4)]
    for n in names:
        await app.schedules.create(n, job=f"j_{n}", every=1, catchup="all", payload={"n": n},
                                   queue_name="pq")  # fmt: skip
    missed = {n: await _make_due(app, n, 5) for n in names}
    await ScheduleDuty(ns).poll()
    parts: set[str] = set()
    for n in names:
        runs = await _runs(app, f"j_{n}")
        ticks = _ticks(runs)
        assert ticks == list(range(missed[n], ticks[-1] + 1, 1000)) and len(ticks) in (6, 7)
        for r in runs:
            tick = int(r["scheduled_at"])
            assert r["schedule"] == n and r["status"] == "queued" and r["queue"] == "pq"
            assert r["id"] == tick_run_id(n, tick, int(r["part"]))
            info = await app.get_run(r["id"])
            assert info is not None and info.payload == {"n": n} and info.status == "queued"
        parts |= {r["part"] for r in runs}
        got = await app.schedules.get(n)
        assert got is not None and got.last_run_id == runs[-1]["id"]
        assert got.next_fire_at is not None
        assert got.next_fire_at.timestamp() * 1000 > ticks[-1]
        last_tick = await app.redis.hget(ns.keys.schedule(n), "last_tick")
        assert int(last_tick) == ticks[-1]
    assert len(parts) > 1  # ticks spread over the partitions
    listed = {s.name: s.last_run_id for s in await app.schedules.list()}
    assert set(listed) == set(names) and all(listed.values())
    await _no_run_on_the_namespace_tag(app)


async def test_each_tick_once_when_fired_concurrently(part_app: StackShift) -> None:
    app, ns = part_app, part_app._core
    await app.schedules.create("race", job="r", every=1, catchup="all", queue_name="rq")
    first = await _make_due(app, "race", 5)
    duties = [ScheduleDuty(ns) for _ in range(8)]
    replies = await asyncio.gather(*(d.poll() for d in duties))
    assert len(replies) == 8
    runs = await _runs(app, "r")
    ticks = _ticks(runs)
    assert len(ticks) in (6, 7) and ticks == list(range(first, ticks[-1] + 1, 1000))
    # the same again, by one fire called for the same due schedule from 8 duties at once
    await asyncio.sleep(1.1)  # the next tick is due
    _, _, due = await ns.scripts.due_schedules(10)
    assert [d.name for d in due] == ["race"]
    now = await server_ms(ns)
    won = await asyncio.gather(*(d.fire(due[0], now) for d in duties))
    assert sum(w is not None for w in won) == 1  # one fire advanced the schedule
    after = _ticks(await _runs(app, "r"))
    assert len(after) == len(set(after)) and after[: len(ticks)] == ticks
    assert after == list(range(first, after[-1] + 1, 1000))


async def test_a_crash_between_create_and_advance_doubles_nothing(
    part_app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, ns = part_app, part_app._core
    await app.schedules.create("c", job="cj", every=1, catchup="all", queue_name="cq")
    first = await _make_due(app, "c", 3)
    advance = Scripts.advance_schedule

    async def crash(self: Scripts, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("the worker died before advancing the schedule")

    monkeypatch.setattr(Scripts, "advance_schedule", crash)
    duty = ScheduleDuty(ns)
    with pytest.raises(ConnectionError):
        await duty.poll()
    made = await _runs(app, "cj")
    ticks = _ticks(made)
    assert len(ticks) in (4, 5) and ticks[0] == first  # step 1 done: the runs exist
    info = await app.schedules.get("c")
    assert info is not None and info.last_run_id is None  # step 2 not done
    assert info.next_fire_at is not None and info.next_fire_at.timestamp() * 1000 == first
    monkeypatch.setattr(Scripts, "advance_schedule", advance)
    await ScheduleDuty(ns).poll()  # the next fire redoes step 1 (deduplicated), then step 2
    again = await _runs(app, "cj")
    assert [r["id"] for r in again[: len(made)]] == [r["id"] for r in made]
    got = _ticks(again)
    assert len(got) == len(set(got)) and got == list(range(first, got[-1] + 1, 1000))
    info = await app.schedules.get("c")
    assert info is not None and info.last_run_id == again[-1]["id"]
    assert info.next_fire_at is not None and info.next_fire_at.timestamp() * 1000 > got[-1]


async def test_overlap_across_partitions(part_app: StackShift) -> None:
    app, ns = part_app, part_app._core
    modes = ("allow", "skip", "cancel_other")
    for mode in modes:
        await app.schedules.create(mode, job=f"o_{mode}", every=1, overlap=mode,
                                   queue_name="oq")  # fmt: skip
    for mode in modes:  # the first tick: one queued (unfinished) run each
        await _make_due(app, mode, 2)
    await ScheduleDuty(ns).poll()
    fired = {m: await _runs(app, f"o_{m}") for m in modes}
    assert all(len(rs) == 1 for rs in fired.values()), fired
    seen_parts: set[str] = set()
    for _ in range(6):  # later ticks, each run still unfinished
        await asyncio.sleep(1.05)
        await ScheduleDuty(ns).poll()
        after = {m: await _runs(app, f"o_{m}") for m in modes}
        assert [r["status"] for r in after["skip"]] == ["queued"]
        assert after["skip"][0]["id"] == fired["skip"][0]["id"]
        assert all(r["status"] == "queued" for r in after["allow"])
        statuses = [r["status"] for r in after["cancel_other"]]
        assert statuses == ["cancelled"] * (len(statuses) - 1) + ["queued"]
        seen_parts |= {r["part"] for r in after["cancel_other"]}
        if len(after["cancel_other"]) >= 3 and len(seen_parts) > 1:
            break
    assert len(seen_parts) > 1  # cancelled across partitions
    for r in after["cancel_other"][:-1]:
        info = await app.get_run(r["id"])
        assert info is not None and info.status == "cancelled"
        assert "schedule cancel_other" in str(info.timeline[-1])
    for mode, runs in after.items():
        got = await app.schedules.get(mode)
        assert got is not None and got.last_run_id == runs[-1]["id"]
    skipped = await app.schedules.get("skip")
    assert skipped is not None and skipped.next_fire_at is not None  # skipping advances it


async def test_trigger_makes_a_run_on_a_partition(part_app: StackShift) -> None:
    app, ns = part_app, part_app._core
    await app.schedules.create("t", job="tj", cron="0 0 1 1 *", payload=7, queue_name="tq")
    before = await app.schedules.get("t")
    ids = [str((await app.schedules.trigger("t")).id) for _ in range(8)]
    parts = {ns.part_of(i) for i in ids}
    assert len(parts) > 1 and all(i.endswith(f"-{ns.part_of(i)}") for i in ids)
    runs = {r["id"]: r for r in await _runs(app, "tj")}
    assert set(runs) == set(ids)
    now = await server_ms(ns)
    for r in runs.values():
        assert r["schedule"] == "t" and r["status"] == "queued"
        assert now - 60_000 < int(r["scheduled_at"]) <= now
    after = await app.schedules.get("t")
    assert before is not None and after is not None
    assert after.next_fire_at == before.next_fire_at and after.last_run_id == ids[-1]
    with pytest.raises(ScheduleNotFoundError):
        await app.schedules.trigger("missing")
    await _no_run_on_the_namespace_tag(app)


async def test_pause_resume_delete(part_app: StackShift) -> None:
    app, ns = part_app, part_app._core
    await app.schedules.create("p", job="pj", every=1, catchup="all", queue_name="pq")
    await _make_due(app, "p", 3)
    assert await app.schedules.pause("p") is True
    await ScheduleDuty(ns).poll()
    assert await _runs(app, "pj") == []  # paused: nothing fires
    info = await app.schedules.get("p")
    assert info is not None and info.paused and info.next_fire_at is None
    now = await server_ms(ns)
    assert await app.schedules.resume("p") is True
    await asyncio.sleep(1.1)
    await ScheduleDuty(ns).poll()
    ticks = _ticks(await _runs(app, "pj"))
    assert 1 <= len(ticks) <= 3 and all(t > now for t in ticks)  # no burst of missed ticks
    assert await app.schedules.delete("p") is True
    fired = await _runs(app, "pj")
    await asyncio.sleep(1.1)
    await ScheduleDuty(ns).poll()
    assert await _runs(app, "pj") == fired  # runs kept; nothing fires after the delete
    assert await app.schedules.get("p") is None and await app.schedules.list() == []


async def test_jitter_flow_key_and_version(part_app: StackShift) -> None:
    app, ns = part_app, part_app._core

    @app.job("keyed", queue="kq", concurrency=Concurrency(limit=1, key="account"), version=2)
    async def keyed(ctx: RunContext) -> None: ...

    await app.worker().registration.setup()  # publish and register (version 2 is live)
    await app.schedules.create("k", job="keyed", every=1, catchup="all", jitter=3600,
                               payload={"account": "a7"})  # fmt: skip
    await _make_due(app, "k", 3)
    await ScheduleDuty(ns).poll()
    runs = await _runs(app, "keyed")
    assert len(runs) in (4, 5)
    want = {app._core.part_of(str((await app.start("keyed", {"account": "a7"})).id))}
    assert {int(r["part"]) for r in runs} == want  # the flow key's partition
    for r in runs:
        tick = int(r["scheduled_at"])
        assert r["status"] == "scheduled" and r["ver"] == "2" and "slots" in r
        due = await app.redis.zscore(ns.keys_of(r["id"]).delayed("kq"), r["id"])
        assert due == tick + jitter_ms("k", tick, 3_600_000)


async def test_workers_complete_interval_and_cron_ticks(
    part_app: StackShift, make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app, ns = part_app, part_app._core
    seen: list[tuple[str | None, int, str]] = []

    def record(ctx: RunContext) -> str:
        at = ctx.scheduled_at
        assert at is not None
        seen.append((ctx.schedule, round(at.timestamp() * 1000), ctx.run_id))
        return ctx.run_id

    app.job("iv", record, queue="wq")
    app.job("cr", record, queue="wq")
    other = make_app(app.namespace, partitions=P)  # a second worker process, in effect
    other.job("iv", record, queue="wq")
    other.job("cr", record, queue="wq")
    await app.schedules.create("interval", job="iv", every=1, catchup="all")
    await app.schedules.create("cron", job="cr", cron="* * * * *", catchup="latest")
    minute = (await server_ms(ns) // 60_000 - 1) * 60_000  # the cron tick a minute ago
    await app.redis.hset(ns.keys.schedule("cron"), "next", minute)
    await app.redis.zadd(ns.keys.schedules(), {"cron": minute})
    running_worker(app, concurrency=4)
    running_worker(other, concurrency=4)
    await wait_for(lambda: sum(s == "interval" for s, _, _ in seen) >= 5, 30)
    await wait_for(lambda: any(s == "cron" for s, _, _ in seen), 20)
    await app.schedules.delete("interval")
    await app.schedules.delete("cron")
    await wait_for(lambda: _all_done(app, "iv"), 20)
    runs = await _runs(app, "iv")
    ticks = _ticks(runs)
    assert len(ticks) == len(set(ticks)) and ticks == list(range(ticks[0], ticks[-1] + 1, 1000))
    assert len({r["part"] for r in runs}) > 1
    assert {(t, rid) for s, t, rid in seen if s == "interval"} == {
        (int(r["scheduled_at"]), r["id"]) for r in runs
    }  # each tick ran once, by one of the two workers
    cron_runs = await _runs(app, "cr")  # two when a minute turned during the test
    cron_ticks = [int(r["scheduled_at"]) for r in cron_runs]
    assert cron_runs and len(cron_ticks) == len(set(cron_ticks)) and min(cron_ticks) >= minute
    cron_run = cron_runs[cron_ticks.index(min(cron_ticks))]
    for rid in (runs[0]["id"], cron_run["id"]):
        assert await app.run(rid).result(timeout=10) == rid


async def _all_done(app: StackShift, job: str) -> bool:
    runs = await _runs(app, job)
    return bool(runs) and all(r["status"] == "completed" for r in runs)


async def test_every_schedule_script_call_touches_one_slot(
    part_app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule that makes P > 1 work on Redis Cluster, checked on any Redis: each call's
    KEYS and the key prefix it derives keys from (ARGV[1]) share one slot."""
    app, ns = part_app, part_app._core
    calls: list[tuple[str, list[str], list[Any]]] = []
    call = Scripts.call

    async def recording(self: Scripts, name: str, keys: Any, args: Any) -> Any:
        calls.append((name, list(keys), list(args)))
        return await call(self, name, keys, args)

    monkeypatch.setattr(Scripts, "call", recording)
    await app.schedules.create("one", job="oj", every=1, catchup="all", overlap="cancel_other",
                               queue_name="sq")  # fmt: skip
    await _make_due(app, "one", 3)
    await ScheduleDuty(ns).poll()
    await app.schedules.trigger("one")
    await app.schedules.pause("one")
    await app.schedules.resume("one")
    await app.schedules.delete("one")
    names = {c[0] for c in calls}
    assert {"start", "cancel", "advance_schedule", "due_schedules", "upsert_schedule"} <= names
    assert "fire_schedule" not in names and "trigger_schedule" not in names
    for name, keys, args in calls:
        slots = {key_slot(k.encode()) for k in keys}
        if args and isinstance(args[0], str) and args[0].startswith("ss:{"):
            slots.add(key_slot(args[0].encode()))
        assert len(slots) == 1, (name, keys, args[:1])
