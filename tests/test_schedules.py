"""Schedules on a real Redis: exactly one run per tick across worker processes, catch-up
after downtime, overlap, pause/resume, trigger, upsert, delete, the decorator form,
ctx.schedule/scheduled_at, bad input; and the pure tick arithmetic (DST in Europe/Berlin).

Catch-up and overlap tests drive `ScheduleDuty.poll()` by hand with no worker taking runs,
so every run a tick creates stays visible (queued) and the outcome is deterministic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apps import obs_key
from helpers import namespace_keys, spawn_worker, wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis._client.schedules import ScheduleDuty, server_ms
from stackshift_redis._core.cron import MAX_CATCHUP, Cadence, jitter_ms, make_cadence, plan
from stackshift_redis.errors import (
    InvalidArgumentError,
    ScheduleNotFoundError,
    UnknownJobError,
)

BERLIN = ZoneInfo("Europe/Berlin")


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def _local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(BERLIN)


# pure arithmetic ------------------------------------------------------------------------


@pytest.mark.parametrize("day", [date(2026, 3, 29), date(2026, 10, 25)], ids=["spring", "fall"])
def test_berlin_0230_fires_once_on_dst_change_days(day: date) -> None:
    cadence = make_cadence("30 2 * * *", None, "Europe/Berlin")
    start = _ms(datetime(day.year, day.month, day.day, tzinfo=BERLIN) - timedelta(days=2))
    ticks, t = [], start
    for _ in range(5):
        t = cadence.next_after(t)
        ticks.append(t)
    on_day = [x for x in ticks if _local(x).date() == day]
    assert len(on_day) == 1, [str(_local(x)) for x in ticks]
    assert [_local(x).date() for x in ticks] == [day + timedelta(days=d) for d in (-2, -1, 0, 1, 2)]
    local = _local(on_day[0])
    if day.month == 3:  # 02:30 does not exist: fires when the clocks jump to 03:00 (CEST)
        assert (local.hour, local.minute, local.utcoffset()) == (3, 0, timedelta(hours=2))
    else:  # 02:30 happens twice: fires once, at the first (CEST, 00:30 UTC)
        assert (local.hour, local.minute, local.utcoffset()) == (2, 30, timedelta(hours=2))
    # the other days fire at 02:30 local, before and after the change
    assert all((_local(x).hour, _local(x).minute) == (2, 30) for x in ticks if x != on_day[0])
    # the reverse walk (catch-up) sees the same ticks as the forward walk
    assert cadence.latest(ticks[-1], ticks[0], 10) == ticks


def test_every_is_a_fixed_duration_aligned_to_the_epoch() -> None:
    cadence = make_cadence(None, timedelta(minutes=5), "Europe/Berlin")
    spring = _ms(datetime(2026, 3, 29, 1, 58, tzinfo=BERLIN))
    a = cadence.next_after(spring)
    b = cadence.next_after(a)
    assert b - a == 300_000 and a % 300_000 == 0 and a > spring


def test_plan_catchup_modes() -> None:
    every = Cadence(None, 1000, "UTC")
    now = 1_000_000_500
    next_ms = now - 10_500  # ten missed ticks and the current one
    ticks, nxt = plan(every, "all", next_ms, now)
    assert ticks == list(range(now - 10_500, now, 1000)) and nxt == now + 500
    assert plan(every, "latest", next_ms, now)[0] == [now - 500]
    assert plan(every, "skip", next_ms, now)[0] == [now - 500]  # the current tick is on time
    assert len(plan(every, "all", now - 1_000_000, now)[0]) == MAX_CATCHUP
    daily = Cadence(None, 86_400_000, "UTC")
    day0 = 86_400_000 * 20_000
    assert plan(daily, "skip", day0 - 86_400_000, day0 + 3_600_000) == ([], day0 + 86_400_000)
    assert plan(daily, "latest", day0 - 86_400_000, day0 + 3_600_000)[0] == [day0]
    assert plan(every, "all", now + 10, now) == ([], now + 10)  # not due yet


def test_jitter_is_decided_once_per_tick() -> None:
    values = {jitter_ms("s", t, 5000) for t in range(0, 100_000, 1000)}
    assert all(0 <= v <= 5000 for v in values) and len(values) > 50
    assert jitter_ms("s", 7000, 5000) == jitter_ms("s", 7000, 5000)
    assert jitter_ms("s", 7000, 0) == 0


# helpers -----------------------------------------------------------------------------


async def _make_due(app: StackShift, name: str, ticks_ago: int) -> int:
    """Pretend no worker ran for a while: set the stored next fire to an interval
    schedule's tick `ticks_ago` intervals before now. Returns that tick."""
    h = await app.redis.hgetall(app._core.keys.schedule(name))
    every = int(h[b"every"])
    now = await server_ms(app._core)
    tick = (now // every - ticks_ago) * every
    await app.redis.hset(app._core.keys.schedule(name), "next", tick)
    await app.redis.zadd(app._core.keys.schedules(), {name: tick})
    return tick


async def _runs(app: StackShift, job: str) -> list[Any]:
    """Every run of `job`, oldest first."""
    runs = []
    for status in ("queued", "scheduled", "running", "completed", "failed", "cancelled"):
        runs += await app.list_runs(status=status, job=job, limit=1000)
    return sorted(runs, key=lambda r: r.id)


async def _fields(app: StackShift, run_id: str, *names: str) -> list[str | None]:
    vals = await app.redis.hmget(app._core.keys_of(run_id).run(run_id), list(names))
    return [v.decode() if v is not None else None for v in vals]


async def _ticks(app: StackShift, runs: list[Any]) -> list[int]:
    """The sorted scheduled_at (ms) of runs."""
    return sorted([int((await _fields(app, r.id, "scheduled_at"))[0] or 0) for r in runs])


# the API -----------------------------------------------------------------------------


async def test_runs_carry_ctx_schedule_and_scheduled_at(
    app: StackShift, running_worker: Any
) -> None:
    seen: list[tuple[str | None, datetime | None, str]] = []

    @app.job("report", queue="s1")
    async def report(ctx: RunContext) -> None:
        seen.append((ctx.schedule, ctx.scheduled_at, "async"))

    @app.job("report_sync", queue="s1")
    def report_sync(ctx: Any) -> None:
        seen.append((ctx.schedule, ctx.scheduled_at, "sync"))

    info = await app.schedules.create("every-second", job="report", every=1, payload={"k": 1})
    assert info.every == timedelta(seconds=1) and info.cron is None and info.payload == {"k": 1}
    assert info.next_fire_at is not None and info.next_fire_at.tzinfo is not None
    await app.schedules.create("sync-one", job="report_sync", every=timedelta(seconds=1))
    running_worker(app, concurrency=4)
    await wait_for(lambda: {k for _, _, k in seen} == {"async", "sync"} and len(seen) >= 4, 10)
    await app.schedules.delete("every-second")
    await app.schedules.delete("sync-one")
    for schedule, at, kind in seen:
        assert schedule == ("every-second" if kind == "async" else "sync-one")
        assert at is not None and at.tzinfo is not None and _ms(at) % 1000 == 0
    assert len({(s, at) for s, at, _ in seen}) == len(seen)  # one run per tick
    last = await app.schedules.get("every-second")
    assert last is None


async def test_catchup_all_latest_skip_after_downtime(app: StackShift) -> None:
    duty = ScheduleDuty(app._core)
    for mode in ("all", "latest", "skip"):
        await app.schedules.create(mode, job=f"job_{mode}", every=1, catchup=mode,
                                   queue_name="cq")  # fmt: skip
    missed = {mode: await _make_due(app, mode, 10) for mode in ("all", "latest", "skip")}
    before = await server_ms(app._core)
    await duty.poll()
    now = await server_ms(app._core)
    runs = {mode: await _runs(app, f"job_{mode}") for mode in missed}
    ticks = {m: await _ticks(app, rs) for m, rs in runs.items()}
    # "all": each missed tick and the current one (11, or 12 if a second began meanwhile)
    assert ticks["all"] == list(range(missed["all"], ticks["all"][-1] + 1, 1000))
    assert len(ticks["all"]) in (11, 12)
    # "latest" and "skip" (current tick on time): one run, for the latest tick
    for mode in ("latest", "skip"):
        assert len(ticks[mode]) == 1
        assert ticks[mode][0] - missed[mode] in (10_000, 11_000)
    for mode in missed:  # advanced past now: no burst at the next poll
        info = await app.schedules.get(mode)
        assert info is not None and info.next_fire_at is not None
        assert before < _ms(info.next_fire_at) <= now + 1000
    # "skip" with every tick long past (a weekly tick, hours old): nothing fires
    await app.schedules.create("weekly", job="job_weekly", every=timedelta(days=7),
                               catchup="skip", queue_name="cq")  # fmt: skip
    await app.schedules.create("weekly-latest", job="job_weekly_l", every=timedelta(days=7),
                               catchup="latest", queue_name="cq")  # fmt: skip
    tick = await _make_due(app, "weekly", 1)
    await _make_due(app, "weekly-latest", 1)
    await ScheduleDuty(app._core).poll()
    current = tick + 7 * 86_400_000  # weekly ticks: Thursdays 00:00 UTC
    if now - current > 60_000:  # (not within the first minute of a Thursday, UTC)
        skipped = await app.schedules.get("weekly")
        assert skipped is not None and skipped.last_run_id is None
        assert await _runs(app, "job_weekly") == []
    assert len(await _runs(app, "job_weekly_l")) == 1  # "latest" fires that old tick


async def test_catchup_all_is_bounded(app: StackShift) -> None:
    await app.schedules.create("many", job="j", every=1, catchup="all", queue_name="cq")
    await _make_due(app, "many", 500)
    await ScheduleDuty(app._core).poll()
    assert len(await _runs(app, "j")) == MAX_CATCHUP


async def test_overlap_modes(app: StackShift) -> None:
    modes = ("allow", "skip", "cancel_other")
    for mode in modes:
        await app.schedules.create(mode, job=f"o_{mode}", every=1, overlap=mode,
                                   queue_name="oq")  # fmt: skip
    await asyncio.sleep(1.1)
    await ScheduleDuty(app._core).poll()  # first tick: one queued (unfinished) run each
    first = {m: await _runs(app, f"o_{m}") for m in modes}
    assert all(len(rs) == 1 for rs in first.values()), first
    await asyncio.sleep(1.1)
    await ScheduleDuty(app._core).poll()  # the next tick, the first run still unfinished
    after = {m: await _runs(app, f"o_{m}") for m in modes}
    assert [r.status for r in after["allow"]] == ["queued", "queued"]
    assert [(r.id, r.status) for r in after["skip"]] == [(first["skip"][0].id, "queued")]
    got = [(r.id, r.status) for r in after["cancel_other"]]
    assert len(got) == 2 and got[0] == (first["cancel_other"][0].id, "cancelled")
    assert got[1][1] == "queued"
    cancelled = await app.get_run(got[0][0])
    assert cancelled is not None and "schedule cancel_other" in str(cancelled.timeline[-1])
    for mode, runs in after.items():  # the schedule points at its newest run
        info = await app.schedules.get(mode)
        assert info is not None and info.last_run_id == runs[-1].id


async def test_one_tick_fires_once_even_when_polled_concurrently(app: StackShift) -> None:
    await app.schedules.create("race", job="r", every=1, catchup="all", queue_name="rq")
    await _make_due(app, "race", 5)
    duties = [ScheduleDuty(app._core) for _ in range(8)]
    await asyncio.gather(*(d.poll() for d in duties))
    ticks = await _ticks(app, await _runs(app, "r"))
    assert len(ticks) in (6, 7)  # 5 missed + the current tick (+1 if a second began)
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000))  # each once, none skipped


async def test_a_tick_leaves_no_key_and_never_fires_twice(app: StackShift) -> None:
    """Issue 23, defect 4: a tick left a guard key for an hour (3,600 keys for an every=1s
    schedule). Now the schedule's hash keeps the newest tick handled instead."""
    await app.schedules.create("g", job="gj", every=1, catchup="all", queue_name="gq")
    tick = await _make_due(app, "g", 3)
    await ScheduleDuty(app._core).poll()
    fired = await _ticks(app, await _runs(app, "gj"))
    assert len(fired) in (4, 5) and fired[0] == tick
    per_tick = [k for k in await namespace_keys(app) if b":idem:" in k]
    assert per_tick == []
    # the stored next fire set back to the first tick (a server clock set back): the ticks
    # planned again are not fired a second time
    await app.redis.hset(app._core.keys.schedule("g"), "next", tick)
    await app.redis.zadd(app._core.keys.schedules(), {"g": tick})
    await ScheduleDuty(app._core).poll()
    again = await _ticks(app, await _runs(app, "gj"))
    assert len(again) == len(set(again)) and again[: len(fired)] == fired


async def test_pause_resume_without_burst(app: StackShift) -> None:
    await app.schedules.create("p", job="pj", every=1, catchup="all", queue_name="pq")
    assert await app.schedules.pause("p") is True
    info = await app.schedules.get("p")
    assert info is not None and info.paused and info.next_fire_at is None
    assert await app.redis.zscore(app._core.keys.schedules(), "p") == float("inf")
    duty = ScheduleDuty(app._core)
    await asyncio.sleep(1.2)
    await duty.poll()
    assert await _runs(app, "pj") == []  # paused: nothing fires
    now = await server_ms(app._core)
    assert await app.schedules.resume("p") is True
    info = await app.schedules.get("p")
    assert info is not None and not info.paused and info.next_fire_at is not None
    assert now < _ms(info.next_fire_at) <= now + 2000  # the next tick after the resume
    await duty.poll()
    await asyncio.sleep(1.1)
    await ScheduleDuty(app._core).poll()
    end = await server_ms(app._core)
    ticks = await _ticks(app, await _runs(app, "pj"))
    # no burst of the ticks missed while paused (catchup="all" would fire them): only
    # ticks after the resume, one a second since (1.1 s, or more on a loaded machine)
    assert 1 <= len(ticks) <= (end - now) // 1000 + 1, (now, end, ticks)
    assert all(now < t <= end for t in ticks), (now, end, ticks)
    assert await app.schedules.pause("nope") is False
    assert await app.schedules.resume("nope") is False


async def test_trigger_runs_now_and_keeps_ticks(app: StackShift, running_worker: Any) -> None:
    @app.job("trig", queue="tq")
    async def trig(ctx: RunContext) -> Any:
        return [ctx.schedule, ctx.payload]

    await app.schedules.create("t", job="trig", cron="0 0 1 1 *", payload=7)
    before = await app.schedules.get("t")
    running_worker(app)
    handle = await app.schedules.trigger("t")
    assert await handle.result(timeout=10) == ["t", 7]
    after = await app.schedules.get("t")
    assert before is not None and after is not None
    assert after.next_fire_at == before.next_fire_at and after.last_run_id == handle.id
    with pytest.raises(ScheduleNotFoundError):
        await app.schedules.trigger("missing")


async def test_upsert_changes_cadence_and_keeps_a_pending_tick(app: StackShift) -> None:
    a = await app.schedules.create("u", job="uj", every=1, queue_name="uq")
    b = await app.schedules.create("u", job="uj", every=3600, queue_name="uq", payload="x")
    assert a.next_fire_at is not None and b.next_fire_at is not None
    assert b.every == timedelta(hours=1) and b.payload == "x"
    assert _ms(b.next_fire_at) % 3_600_000 == 0 and b.next_fire_at > a.next_fire_at
    c = await app.schedules.create("u", job="uj", cron="*/5 * * * *", timezone="Asia/Kolkata",
                                   queue_name="uq")  # fmt: skip
    assert c.cron == "*/5 * * * *" and c.every is None and c.timezone == "Asia/Kolkata"
    assert c.next_fire_at is not None
    tick = _ms(c.next_fire_at) - 15 * 60_000  # pretend three ticks were missed
    await app.redis.hset(app._core.keys.schedule("u"), "next", tick)
    await app.redis.zadd(app._core.keys.schedules(), {"u": tick})
    d = await app.schedules.create("u", job="uj", cron="*/5  * * * *", timezone="Asia/Kolkata",
                                   queue_name="uq", overlap="skip")  # fmt: skip
    assert d.next_fire_at is not None and _ms(d.next_fire_at) == tick
    assert d.overlap == "skip"  # same cadence: the missed tick stays pending
    assert [s.name for s in await app.schedules.list()] == ["u"]


async def test_upsert_makes_a_planned_fire_stale(app: StackShift) -> None:
    await app.schedules.create("v", job="vj", every=1, queue_name="vq")
    await _make_due(app, "v", 2)
    _, _, due = await app._core.scripts.due_schedules(10)
    await app.schedules.create("v", job="vj", every=1, queue_name="vq", payload=2)
    duty = ScheduleDuty(app._core)
    assert await duty.fire(due[0], await server_ms(app._core)) is None  # rev changed
    assert await _runs(app, "vj") == []
    await duty.poll()
    assert len(await _runs(app, "vj")) == 1


async def test_delete_stops_it(app: StackShift, running_worker: Any) -> None:
    done: list[str] = []
    app.job("dj", lambda ctx: done.append(ctx.run_id), queue="dq")
    await app.schedules.create("d", job="dj", every=1)
    running_worker(app)
    await wait_for(lambda: len(done) >= 1, 10)
    assert await app.schedules.delete("d") is True
    fired = len(await _runs(app, "dj"))  # a run may be fired but not run yet (loaded)
    await asyncio.sleep(2.2)
    assert len(await _runs(app, "dj")) == fired  # no tick fired after the delete
    assert len(done) <= fired
    assert await app.schedules.get("d") is None and await app.schedules.list() == []
    assert await app.schedules.delete("d") is False


async def test_decorator_schedule_is_upserted_and_removed_by_workers(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app()
    app.job("digest", lambda ctx: None, queue="dg", cron="0 9 * * MON-FRI",
            timezone="Europe/Berlin")  # fmt: skip
    worker = running_worker(app)
    await wait_for(lambda: app.schedules.get("digest"), 10)
    info = await app.schedules.get("digest")
    assert info is not None and info.job == "digest" and info.queue == "dg"
    assert info.cron == "0 9 * * MON-FRI" and info.timezone == "Europe/Berlin"
    assert info.next_fire_at is not None
    local = info.next_fire_at.astimezone(BERLIN)
    assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
    await worker.stop()
    later = make_app(app.namespace)  # the job no longer declares cron=
    later.job("digest", lambda ctx: None, queue="dg")
    running_worker(later)
    await wait_for(lambda: _gone(later, "digest"), 10)


async def _gone(app: StackShift, name: str) -> bool:
    return await app.schedules.get(name) is None


BAD: list[tuple[str, dict[str, Any]]] = [
    ("cron", {"cron": "61 * * * *"}),
    ("cron", {"cron": "* * *"}),
    ("cron", {"cron": "0 0 30 2 *"}),
    ("timezone", {"cron": "* * * * *", "timezone": "Mars/Olympus"}),
    ("cron", {"cron": "* * * * *", "every": 5}),
    ("cron", {}),
    ("every", {"every": 0}),
    ("every", {"every": -5}),
    ("every", {"every": timedelta(0)}),
    ("every", {"every": "5"}),
    ("overlap", {"every": 5, "overlap": "sometimes"}),
    ("catchup", {"every": 5, "catchup": "most"}),
    ("jitter", {"every": 5, "jitter": -1}),
    ("job", {"every": 5, "job": "bad job!"}),
    ("schedule", {"every": 5, "name": "bad name!"}),
]


@pytest.mark.parametrize(("arg", "kwargs"), BAD, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BAD)])
async def test_bad_input_writes_nothing(app: StackShift, arg: str, kwargs: dict[str, Any]) -> None:
    kw = {"job": "report", "queue_name": "q", **kwargs}
    name = kw.pop("name", "s")
    before = await namespace_keys(app)
    with pytest.raises(InvalidArgumentError) as err:
        await app.schedules.create(name, **kw)
    assert arg in str(err.value)
    assert await namespace_keys(app) == before == []


async def test_unknown_job_writes_nothing(app: StackShift) -> None:
    with pytest.raises(UnknownJobError):
        await app.schedules.create("s", job="nobody-knows", every=5)
    assert await namespace_keys(app) == []


async def test_jitter_delays_each_tick_once(app: StackShift) -> None:
    # a jitter of up to an hour: the tick's delay (hash-derived) all but surely outlasts
    # a slow poll on a loaded machine (a 30 s jitter fell under a second now and then)
    await app.schedules.create("jit", job="jj", every=1, jitter=3600, queue_name="jq")
    made = await _make_due(app, "jit", 0)
    await ScheduleDuty(app._core).poll()
    (run,) = await _runs(app, "jj")
    (tick,) = await _ticks(app, [run])
    assert tick - made in (0, 1000)
    assert run.status == "scheduled"  # waits for tick + its jitter, then runs
    due = await app.redis.zscore(app._core.keys_of(run.id).delayed("jq"), run.id)
    assert due == tick + jitter_ms("jit", tick, 3_600_000)


def test_bad_decorator_options_raise(app: StackShift) -> None:
    with pytest.raises(InvalidArgumentError, match="cron"):
        app.job("x", lambda ctx: None, cron="not cron")
    with pytest.raises(InvalidArgumentError, match="timezone"):
        app.job("y", lambda ctx: None, cron="* * * * *", timezone="Nowhere/Land")
    with pytest.raises(InvalidArgumentError, match="timezone"):
        app.job("z", lambda ctx: None, timezone="UTC")
    assert "x" not in app.jobs and "y" not in app.jobs and "z" not in app.jobs


# several worker processes -------------------------------------------------------------


async def test_exactly_one_run_per_tick_across_worker_processes(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    ns = client.namespace
    procs += [spawn_worker(redis_url, ns, "--queue", "sched") for _ in range(3)]
    await wait_for(lambda: _live_workers(client, 3), 20)
    # catchup="all": a tick owed while every worker stalled (a loaded machine) still fires
    await client.schedules.create("tick", job="tick", every=1, queue_name="sched", catchup="all")
    started = time.monotonic()
    key = obs_key(ns, "ticks")
    await wait_for(lambda: _count_at_least(client, key, 12), 30)
    await client.schedules.delete("tick")
    # a tick fired just before the delete finishes: every run ends (each pushed its tick)
    await wait_for(lambda: _all_completed(client, "tick"), 20)
    ticks = [int(t) for t in await client.redis.lrange(key, 0, -1)]
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {sorted(ticks)}"
    ticks.sort()
    assert len(ticks) >= 12 and time.monotonic() - started >= 10
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), "a tick was skipped"
    runs = await client.list_runs(job="tick", status="completed", limit=1000)
    assert len(runs) == len(ticks)


async def _all_completed(app: StackShift, job: str) -> bool:
    runs = await app.list_runs(job=job, limit=1000)
    return bool(runs) and all(r.status == "completed" for r in runs)


async def _live_workers(app: StackShift, n: int) -> bool:
    return int(await app.redis.zcard(app._core.keys.workers())) >= n


async def _count_at_least(app: StackShift, key: str, n: int) -> bool:
    return int(await app.redis.llen(key)) >= n
