"""TestEnv: users' jobs in-process on fakeredis, with a virtual clock that reaches the Lua
scripts and the Python side through one seam; the app's own Redis is left untouched."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import namespace_keys

from stackshift_redis import (
    NonRetriableError,
    RetryAfterError,
    RunContext,
    RunFailed,
    StackShift,
    StackShiftError,
    SyncRunContext,
)
from stackshift_redis._core import clock as clock_module
from stackshift_redis._core.luasrc import script_names, source
from stackshift_redis.errors import InvalidArgumentError, ResultTimeout
from stackshift_redis.testing import TestEnv

# the app's own Redis is never reached inside a TestEnv: nothing listens on port 1
OFFLINE = "redis://127.0.0.1:1/0"


def offline_app() -> StackShift:
    return StackShift(redis_url=OFFLINE, namespace="shop")


@pytest.mark.timeout(20)  # a hang guard: the run below takes milliseconds, never 8 days
async def test_a_week_of_sleeping_waiting_and_backoff_passes_in_test_time() -> None:
    app = offline_app()
    charges: list[int] = []

    @app.job("renewal", retries=3)  # the default exponential backoff with jitter
    async def renewal(ctx: RunContext) -> dict[str, Any]:
        await ctx.step.sleep("trial", timedelta(days=7))
        paid = await ctx.step.wait_for_event(
            "wait-payment", event="payment.succeeded",
            match={"account": ctx.payload["account"]}, timeout=timedelta(days=1),
        )  # fmt: skip
        charge = await ctx.step.run("charge", lambda: charges.append(1) or len(charges))
        if ctx.attempt < 3:
            raise RuntimeError("card network down")
        return {"paid": paid is not None, "charge": charge, "attempt": ctx.attempt}

    began = time.perf_counter()
    async with TestEnv(app) as env:
        start = env.now
        run = await app.start("renewal", {"account": "a1"})
        assert await env.drain() == 1
        assert await run.status() == "waiting"
        await env.advance(timedelta(days=9))
        assert await run.result(timeout=5) == {"paid": False, "charge": 1, "attempt": 3}
        info = await app.get_run(run.id)
        assert info is not None
        assert [e["type"] for e in info.timeline].count("retrying") == 2
        events = {e["type"]: e["at"] for e in info.timeline}
        assert events["sleep_done"] - start == timedelta(days=7)  # fired at its own time
        assert events["timed_out"] - start == timedelta(days=8)
        assert env.now - start == timedelta(days=9)
    elapsed = time.perf_counter() - began
    print(f"9 virtual days, 3 attempts with backoff: {elapsed * 1000:.0f} ms of test time")
    assert charges == [1]  # the charge step ran once across three attempts


async def test_drain_runs_what_is_due_now_and_advance_what_becomes_due() -> None:
    app = offline_app()
    seen: list[str] = []
    app.job("note", lambda ctx: seen.append(ctx.payload))
    async with TestEnv(app) as env:
        now = await app.start("note", "now")
        later = await app.start("note", "later", delay=60)
        at = await app.start("note", "at", run_at=env.now + timedelta(hours=2))
        assert await env.drain() == 1
        assert seen == ["now"] and await later.status() == "scheduled"
        assert await env.advance(59) == 0 and await later.status() == "scheduled"
        assert await env.advance(1) == 1 and seen == ["now", "later"]
        await env.advance(timedelta(hours=2))
        assert seen == ["now", "later", "at"]
        assert [await r.status() for r in (now, later, at)] == ["completed"] * 3


async def test_advance_fires_due_times_in_order() -> None:
    app = offline_app()
    envs: list[TestEnv] = []
    woke: list[tuple[str, datetime]] = []

    @app.job("nap")
    async def nap(ctx: RunContext) -> None:
        await ctx.step.sleep("nap", timedelta(hours=ctx.payload["hours"]))
        woke.append((ctx.payload["name"], envs[0].now))

    async with TestEnv(app) as env:
        envs.append(env)
        start = env.now
        await app.start("nap", {"name": "two", "hours": 2})
        await app.start("nap", {"name": "one", "hours": 1})
        await env.advance(timedelta(hours=3))  # one jump, but each wakes at its own time
    assert [(n, t - start) for n, t in woke] == [
        ("one", timedelta(hours=1)), ("two", timedelta(hours=2))
    ]  # fmt: skip


async def test_events_invoke_and_on_event_triggers_run_in_process() -> None:
    app = offline_app()

    @app.job("thumb", queue="media")
    async def thumb(ctx: RunContext) -> str:
        return f"thumb-{ctx.payload}"

    @app.job("order")
    async def order(ctx: RunContext) -> dict[str, Any]:
        thumbs = [await ctx.step.invoke(f"t{i}", job="thumb", payload=i) for i in range(3)]
        evt = await ctx.step.wait_for_event(
            "shipped", event="shipment.created", match={"order_id": ctx.payload["id"]},
            timeout=timedelta(days=2), lookback=timedelta(minutes=5),
        )  # fmt: skip
        return {"thumbs": thumbs, "tracking": evt.data["tracking"] if evt else None}

    welcomed: list[str] = []
    app.job("welcome", lambda ctx: welcomed.append(ctx.payload["user"]), on_event="user.signup")

    async with TestEnv(app) as env:
        run = await app.start("order", {"id": "o1"})
        await env.drain()  # the parent, three children on another queue, the parent again
        assert await run.status() == "waiting"
        sent = await app.send_event("shipment.created", {"order_id": "o1", "tracking": "Z9"})
        assert sent.resumed == [run.id]
        await env.drain()
        assert await run.result(timeout=5) == {
            "thumbs": ["thumb-0", "thumb-1", "thumb-2"], "tracking": "Z9"
        }  # fmt: skip
        started = await app.send_event("user.signup", {"user": "u1"})
        assert len(started.started) == 1
        await env.drain()
        assert welcomed == ["u1"]


async def test_retries_plain_functions_and_failures() -> None:
    app = offline_app()

    @app.job("flaky", retries=2, backoff=30)
    async def flaky(ctx: RunContext) -> int:
        if ctx.attempt == 1:
            raise RetryAfterError(0)  # due again at once: the same drain retries it
        if ctx.attempt == 2:
            raise RuntimeError("down")  # backoff 30 s
        return ctx.attempt

    @app.job("sync-job")
    def sync_job(ctx: SyncRunContext) -> int:
        return int(ctx.step.run("double", lambda: ctx.payload * 2))

    @app.job("bad")
    async def bad(ctx: RunContext) -> None:
        raise NonRetriableError("invalid card")

    async with TestEnv(app) as env:
        starts = [("flaky", 0), ("sync-job", 21), ("bad", 0)]
        r1, r2, r3 = [await app.start(job, payload) for job, payload in starts]
        assert await env.drain() == 4
        assert await r1.status() == "scheduled"
        assert await r2.result(timeout=5) == 42
        with pytest.raises(RunFailed, match="invalid card"):
            await r3.result(timeout=5)
        await env.advance(29)
        assert await r1.status() == "scheduled"
        await env.advance(1)
        assert await r1.result(timeout=5) == 3


async def test_python_timestamps_follow_the_virtual_clock() -> None:
    app = offline_app()

    @app.job("stamp")
    async def stamp(ctx: RunContext) -> None:
        await ctx.step.run("a", lambda: 1)
        await ctx.step.sleep_until("new-year", datetime(2031, 1, 1, tzinfo=UTC))
        await ctx.step.run("b", lambda: 2)

    start = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    async with TestEnv(app, start=start) as env:
        assert env.now == start and clock_module.now_ms() == round(start.timestamp() * 1000)
        run = await app.start("stamp")
        sent = await app.send_event("anything", {"x": 1})
        await env.drain()
        assert await run.status() == "waiting"
        await env.advance(timedelta(days=365))
        info = await app.get_run(run.id)
        assert info is not None and info.status == "completed" and info.created_at == start
        assert info.steps["a"]["at"] == start
        assert info.steps["b"]["at"] == datetime(2031, 1, 1, tzinfo=UTC)
        assert int(run.id[:11], 16) >= round(start.timestamp() * 1000)  # ids sort by time
        assert sent.id
    assert abs(clock_module.now_ms() - time.time() * 1000) < 5000  # the real clock is back


async def test_the_apps_own_redis_is_untouched_and_used_again_after(app: StackShift) -> None:
    app.job("echo", lambda ctx: ctx.payload)
    before = await namespace_keys(app)
    async with TestEnv(app) as env:
        run = await app.start("echo", "inside")
        await env.drain()
        assert await run.result(timeout=5) == "inside"
    assert await namespace_keys(app) == before
    outside = await app.start("echo", "outside")  # the real Redis again, no worker: queued
    assert await outside.status() == "queued"
    assert await app.get_run(run.id) is None


async def test_bad_arguments_raise_and_write_nothing() -> None:
    app = offline_app()
    app.job("j", lambda ctx: None)
    for kwargs in ({"concurrency": 0}, {"max_attempts": -1}, {"queues": ["bad queue"]},
                   {"start": "yesterday"}):  # fmt: skip
        with pytest.raises(InvalidArgumentError):
            TestEnv(app, **kwargs)
    with pytest.raises(InvalidArgumentError):
        TestEnv("app")  # type: ignore[arg-type]
    env = TestEnv(app)
    with pytest.raises(StackShiftError, match="async with"):
        await env.drain()
    async with env:
        keys_before = await env.app.redis.keys("*")
        for bad in (-1, float("inf"), float("nan"), "1d"):
            with pytest.raises(InvalidArgumentError, match="duration"):
                await env.advance(bad)  # type: ignore[arg-type]
        assert await env.app.redis.keys("*") == keys_before
    with pytest.raises(StackShiftError, match="closed"):
        await env.drain()


async def test_a_job_that_never_ends_is_stopped_with_a_clear_error() -> None:
    app = offline_app()

    @app.job("forever")
    async def forever(ctx: RunContext) -> None:
        await ctx.state.incr("starts")
        await app.start("forever")

    async with TestEnv(app, max_attempts=50) as env:
        await app.start("forever")
        with pytest.raises(StackShiftError, match="more than 50 attempts"):
            await env.drain()


def test_clock_py_is_the_only_python_reader_of_the_wall_clock() -> None:
    package = Path(clock_module.__file__).parent
    for path in package.rglob("*.py"):
        if path.name == "clock.py":
            continue
        text = path.read_text()
        for needle in ("time.time(", "time.time_ns(", "datetime.now(", "utcnow("):
            assert needle not in text, f"{path.name} reads the wall clock: use clock.now_ms()"


def test_production_scripts_never_read_the_virtual_clock() -> None:
    for name in script_names():
        assert "CLOCK_KEY" not in source(name)
        assert source(name, "ss:{t}:clock").count("ss:{t}:clock") == (
            1 if "now_ms()" in source(name) else 0
        )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_works_under_anyio(anyio_backend: str) -> None:
    app = offline_app()

    @app.job("hello")
    async def hello(ctx: RunContext) -> str:
        await ctx.step.sleep("later", timedelta(hours=1))
        return f"hello {ctx.payload}"

    async with TestEnv(app) as env:
        run = await app.start("hello", "anyio")
        await env.advance(timedelta(hours=1))
        assert await run.result(timeout=5) == "hello anyio"


async def test_the_sync_facade_follows_the_app_into_the_test_env(app: StackShift) -> None:
    app.job("double", lambda ctx: ctx.payload * 2)
    outside = await asyncio.to_thread(app.sync.start, "double", 1)  # the real Redis
    async with TestEnv(app) as env:
        inside = await asyncio.to_thread(app.sync.start, "double", 21, delay=60)
        assert await app.get_run(outside.id) is None  # fakeredis: the real run is not here
        await env.drain()
        assert await app.run(inside.id).status() == "scheduled"
        await env.advance(60)  # the sync client's scripts read the same virtual clock
        assert await app.run(inside.id).result(timeout=5) == 42
    assert await asyncio.to_thread(outside.status) == "queued"
    app.sync.close()


async def test_drain_keeps_taking_while_attempts_run() -> None:
    app = offline_app()

    @app.job("leaf")
    async def leaf(ctx: RunContext) -> str:
        return "leaf"

    @app.job("waits-on-leaf")
    async def waits_on_leaf(ctx: RunContext) -> str:
        child = await app.start("leaf")  # not invoke: this attempt blocks on the result
        return str(await child.result(timeout=5))

    async with TestEnv(app) as env:
        run = await app.start("waits-on-leaf")
        assert await env.drain() == 2  # the leaf ran while the first attempt was running
        assert await run.result(timeout=5) == "leaf"


async def test_schedules_fire_at_each_tick_in_test_env() -> None:
    """Runs once schedules (an upkeep duty, another branch) are merged: advance() must stop
    at every tick, so Upkeep.due_now() has to force the schedules' poll and
    Upkeep.next_due_ms() has to include the next schedule's fire time."""
    pytest.importorskip("stackshift_redis._client.schedules", reason="schedules not merged yet")
    app = offline_app()
    envs: list[TestEnv] = []
    fired: list[int] = []

    @app.job("report")
    async def report(ctx: RunContext) -> None:
        fired.append(envs[0].now.hour)

    start = datetime(2030, 1, 1, 0, 30, tzinfo=UTC)
    async with TestEnv(app, start=start) as env:
        envs.append(env)
        await app.schedules.create("hourly", job="report", cron="0 * * * *")
        await env.advance(timedelta(hours=3))
    assert fired == [1, 2, 3]  # one run per tick, each at its own time


async def test_result_skips_virtual_time_until_the_run_is_final() -> None:
    """Issue 27: `await run.result()` inside a TestEnv drains and moves the clock to each
    due time (sleeps, retries) until the run is final, like Temporal's time skipping."""
    app = offline_app()

    @app.job("patient", retries=3, backoff=timedelta(hours=1))
    async def patient(ctx: RunContext) -> int:
        await ctx.step.sleep("a-day", timedelta(days=1))
        if ctx.attempt < 3:
            raise ConnectionError("not yet")
        return ctx.attempt

    @app.job("forever")
    async def forever(ctx: RunContext) -> Any:
        return await ctx.step.wait_for_event("never", event="never.sent")

    async with TestEnv(app) as env:
        begin = env.now
        run = await app.start("patient")
        assert await run.result(timeout=5) == 3  # no drain, no advance
        assert timedelta(days=1) < env.now - begin < timedelta(days=1, hours=4)
        stuck = await app.start("forever")
        with pytest.raises(ResultTimeout, match="nothing is due in this TestEnv"):
            await stuck.result(timeout=5)
    async with TestEnv(app, time_skipping=False) as env:
        run = await app.start("patient")
        with pytest.raises(ResultTimeout):
            await run.result(timeout=0.2)
