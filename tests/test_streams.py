"""Run output streams on real Redis (standalone and cluster): `ctx.publish` and
`run.stream()`: order, topics, resuming after an id, the end, messages of a failed
attempt, 100 concurrent readers, the cap, retention, fencing, re-sent calls, size checks,
the sync twins and TestEnv."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from helpers import namespace_keys, node_of, skip_on_cluster, wait_for

from stackshift_redis import (
    InvalidArgumentError,
    PayloadError,
    RunContext,
    RunNotFoundError,
    StackShift,
    StreamMessage,
    SyncRunContext,
)
from stackshift_redis._core.scripts import PublishRequest
from stackshift_redis.errors import LeaseLostError


async def read(run: Any, **kwargs: Any) -> list[StreamMessage]:
    return [m async for m in run.stream(**kwargs)]


async def test_messages_in_order_by_topic_and_after_an_id(
    app: StackShift, running_worker: Any
) -> None:
    gate = asyncio.Event()

    @app.job("gen")
    async def gen(ctx: RunContext) -> str:
        for i in range(30):
            await ctx.publish({"token": i})
            if i % 10 == 9:
                await ctx.publish({"pct": (i + 1) * 10 // 3}, topic="progress")
            if i == 14:
                await gate.wait()  # the live reader has caught up with the first half
        return "done"

    run = await app.start("gen")
    live = asyncio.create_task(read(run))  # follows from before the first message
    running_worker(app)
    await wait_for(lambda: _count(app, run.id, 15), 10)
    gate.set()
    assert await run.result(timeout=10) == "done"
    everything = await asyncio.wait_for(live, 10)  # ended on its own: the run is final
    tokens = [m.data["token"] for m in everything if m.topic == "default"]
    assert tokens == list(range(30))
    assert [m.data for m in everything if m.topic == "progress"] == [
        {"pct": 33}, {"pct": 66}, {"pct": 100}
    ]  # fmt: skip
    ids = [m.id for m in everything]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-")))) and len(set(ids)) == 33
    assert all(m.attempt == 1 and m.at.tzinfo is not None for m in everything)
    assert await read(run) == everything  # after completion: the same, then the end
    progress = await read(run, topic="progress")
    assert [m.data["pct"] for m in progress] == [33, 66, 100]
    rest = await read(run, after=everything[19].id)
    assert rest == everything[20:]
    assert await read(run, after=everything[-1].id) == []
    again = await read(run, topic="default", after=everything[10].id)
    assert [m.data["token"] for m in again] == list(range(10, 30))


async def _count(app: StackShift, run_id: str, n: int) -> bool:
    return int(await app.redis.xlen(app._core.keys_of(run_id).output(run_id))) >= n


async def test_a_failed_attempts_messages_stay_with_its_attempt_number(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("flaky", retries=1, backoff=0.01)
    async def flaky(ctx: RunContext) -> int:
        await ctx.publish(f"try {ctx.attempt}")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.attempt

    run = await app.start("flaky")
    running_worker(app)
    assert await run.result(timeout=10) == 2
    got = await read(run)
    assert [(m.data, m.attempt) for m in got] == [("try 1", 1), ("try 2", 2)]


async def test_hundred_concurrent_readers_share_one_blocking_read(
    app: StackShift, running_worker: Any
) -> None:
    gate = asyncio.Event()

    @app.job("gen")
    async def gen(ctx: RunContext) -> None:
        await gate.wait()
        for i in range(50):
            await ctx.publish(i)
            await asyncio.sleep(0.002)

    run = await app.start("gen")
    running_worker(app)
    readers = [asyncio.create_task(read(run)) for _ in range(100)]
    await wait_for(lambda: _status(run, "running"), 10)
    await wait_for(lambda: _tail_waiters(run) == 100, 20)  # every reader waits on the tail
    node = node_of(app)
    before = (await app.redis.info("commandstats", **node)).get("cmdstat_xread", {})
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*readers), 20)
    after = (await app.redis.info("commandstats", **node)).get("cmdstat_xread", {})
    assert all([m.data for m in r] == list(range(50)) for r in results)
    assert len({tuple(m.id for m in r) for r in results}) == 1
    xreads = after.get("calls", 0) - before.get("calls", 0)
    assert xreads <= 100, f"{xreads} XREADs for 50 messages and 100 readers: not shared"


def _tail_waiters(run: Any) -> int:
    """How many readers of this process wait on the run's shared tail read."""
    tail = run._waiter.tails._tails.get(run.id)
    return len(tail.waiters) if tail is not None else 0


async def _status(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


async def test_the_cap_keeps_the_newest_messages(app: StackShift, running_worker: Any) -> None:
    @app.job("chatty", max_stream_messages=5)
    async def chatty(ctx: RunContext) -> None:
        for i in range(12):
            await ctx.publish(i)

    run = await app.start("chatty")
    running_worker(app)
    await run.result(timeout=10)
    assert [m.data for m in await read(run)] == [7, 8, 9, 10, 11]
    key = app._core.keys_of(run.id).output(run.id)
    assert await app.redis.xlen(key) == 6  # the 5 newest, and the end entry
    with pytest.raises(InvalidArgumentError, match="max_stream_messages"):
        app.job("bad", lambda ctx: None, max_stream_messages=0)


async def test_nothing_is_left_after_retention(make_app: Any, running_worker: Any) -> None:
    app: StackShift = make_app(retention=1)

    @app.job("talk")
    async def talk(ctx: RunContext) -> None:
        await ctx.publish("hello")

    app.job("quiet", lambda ctx: None)
    talking = await app.start("talk")
    followed = await app.start("quiet", delay=0.3)
    reader = asyncio.create_task(read(followed))  # marks it: its finish ends the stream
    await wait_for(
        lambda: app.redis.hexists(app._core.keys_of(followed.id).run(followed.id), "out"), 10
    )
    running_worker(app)
    await talking.result(timeout=10)
    assert await asyncio.wait_for(reader, 10) == []
    for run in (talking, followed):
        keys = app._core.keys_of(run.id)
        ttl_run = await app.redis.pttl(keys.run(run.id))
        ttl_out = await app.redis.pttl(keys.output(run.id))
        assert 0 < ttl_out <= ttl_run <= 1000  # set in the same script: it never outlives
    await asyncio.sleep(1.2)
    left = [k for k in await namespace_keys(app) if b":out:" in k or b":run:" in k]
    assert left == []
    with pytest.raises(RunNotFoundError):
        await read(talking)


async def test_a_retried_run_keeps_its_stream_and_publishes_again(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("once", retries=0)
    async def once(ctx: RunContext) -> str:
        n = await ctx.state.incr(f"n:{ctx.run_id}")
        await ctx.publish(f"execution {n}")
        if n == 1:
            raise RuntimeError("fails until retried")
        return "ok"

    run = await app.start("once")
    running_worker(app)
    await wait_for(lambda: _status(run, "failed"), 10)
    out, rk = app._core.keys_of(run.id).output(run.id), app._core.keys_of(run.id).run(run.id)
    assert await app.redis.pttl(out) > 0
    await app.pause_queue("default")  # the retried run stays queued
    await app.retry(run.id)
    assert await app.redis.pttl(out) == -1 and await app.redis.pttl(rk) == -1
    await app.resume_queue("default")
    assert await run.result(timeout=10) == "ok"
    assert [m.data for m in await read(run)] == ["execution 1", "execution 2"]
    assert await app.redis.pttl(out) > 0


async def test_a_stale_token_is_refused_and_a_resent_call_adds_nothing(app: StackShift) -> None:
    app.job("j", lambda ctx: None)
    run = await app.start("j")
    scripts = app._core.scripts_of(run.id)
    reply = await scripts.take([("default", 30_000)], 1, max_deliveries=5, retention_ms=60_000)
    taken = reply.taken[0]

    def req(token: str, call: int, data: bytes) -> PublishRequest:
        return PublishRequest(run.id, token, call, attempt=1, topic="", data=data, cap=100)

    first = await scripts.publish(req(taken.token, 1, b"\xa1a"))
    again = await scripts.publish(req(taken.token, 1, b"\xa1a"))  # re-sent
    second = await scripts.publish(req(taken.token, 2, b"\xa1b"))
    assert first == again != second
    assert await app.redis.xlen(app._core.keys_of(run.id).output(run.id)) == 2
    with pytest.raises(LeaseLostError):
        await scripts.publish(req("999", 3, b"\xa1c"))  # another take's token
    await scripts.run_batch([scripts.complete_call(run.id, taken.token, b"\xc0", 60_000)])
    with pytest.raises(LeaseLostError):  # the attempt is over
        await scripts.publish(req(taken.token, 3, b"\xa1c"))
    assert [m.data for m in await read(run)] == ["a", "b"]


async def test_bad_input_raises_and_writes_nothing(make_app: Any, running_worker: Any) -> None:
    app: StackShift = make_app(max_payload_bytes=64)
    seen: list[str] = []

    @app.job("j")
    async def j(ctx: RunContext) -> None:
        for bad in (lambda: ctx.publish("x" * 100), lambda: ctx.publish(object()),
                    lambda: ctx.publish(1, topic="no spaces")):  # fmt: skip
            try:
                await bad()
            except (PayloadError, InvalidArgumentError) as exc:
                seen.append(type(exc).__name__)
        await ctx.publish("fits")

    run = await app.start("j")
    running_worker(app)
    await run.result(timeout=10)
    assert seen == ["PayloadError", "PayloadError", "InvalidArgumentError"]
    assert [m.data for m in await read(run)] == ["fits"]
    with pytest.raises(InvalidArgumentError):
        run.stream(after="not-an-id")
    with pytest.raises(InvalidArgumentError):
        run.stream(topic="")
    with pytest.raises(RunNotFoundError):
        await read(app.run("0000000000000000deadbeef"))


async def test_sync_handler_publishes_and_the_sync_facade_reads(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("plain")
    def plain(ctx: SyncRunContext) -> int:
        for i in range(3):
            ctx.publish({"line": i}, topic="log")
        return 3

    run = await app.start("plain")
    running_worker(app)
    assert await run.result(timeout=10) == 3

    def sync_read() -> list[Any]:
        handle = app.sync.run(run.id)
        first = [(m.topic, m.data) for m in handle.stream()]
        for m in handle.stream(topic="log"):  # leaving early closes the reader
            return [first, m.data]
        return [first]

    got = await asyncio.to_thread(sync_read)
    assert got == [[("log", {"line": i}) for i in range(3)], {"line": 0}]


async def test_streams_in_a_testenv() -> None:
    from stackshift_redis.testing import TestEnv

    app = StackShift(namespace="envstreams")

    @app.job("gen", retries=1, backoff=5)
    async def gen(ctx: RunContext) -> str:
        await ctx.publish(f"attempt {ctx.attempt}")
        await ctx.step.sleep("nap", 3600)
        if ctx.attempt == 1:
            raise RuntimeError("once")
        return "ok"

    async with TestEnv(app) as env:
        t0 = env.now
        run = await app.start("gen")
        reader = asyncio.create_task(read(run))
        await env.drain()
        await env.advance(3600)  # the sleep ends, attempt 1 fails
        await env.advance(5)  # the retry (its sleep is a completed step): it completes
        assert await run.status() == "completed"
        got = await asyncio.wait_for(reader, 5)  # ended: the run is final
        # the handler replays after its sleep and publishes again (publish is not memoized)
        assert [(m.data, m.attempt) for m in got] == [
            ("attempt 1", 1), ("attempt 1", 1), ("attempt 2", 2)
        ]  # fmt: skip
        assert [m.at - t0 for m in got] == [timedelta(seconds=s) for s in (0, 3600, 3605)]


@skip_on_cluster  # MONITOR watches one server
async def test_a_run_that_never_publishes_pays_no_extra_command(
    app: StackShift, redis_url: str, running_worker: Any
) -> None:
    """Budget: streams add no command to a run that never publishes (and that nobody
    follows): its scripts never touch an output stream, and the `out` field is only read
    along with fields the same HMGET reads anyway (the lease check, the finish)."""
    app.job("noop", lambda ctx: None)
    seen: list[list[str]] = []
    monitor = aioredis.from_url(redis_url)
    prefixes = {app._core.keys.prefix, *(k.prefix for k in app._core.part_keys)}

    async def watch() -> None:
        async with monitor.monitor() as m:
            while True:
                seen.append((await m.next_command())["command"].split())

    task = asyncio.create_task(watch())

    async def mark(name: str) -> None:
        """Until MONITOR shows a marker command: it has shown every command before it."""
        key = f"monitor-mark-{uuid.uuid4().hex}-{name}"

        async def seen_mark() -> bool:
            await monitor.get(key)
            return any(key in a for c in seen for a in c)

        await wait_for(seen_mark, 20)

    try:
        await mark("start")  # MONITOR is on
        run = await app.start("noop")
        running_worker(app)
        await wait_for(lambda: _status(run, "completed"), 10)
        await mark("end")  # MONITOR has shown the run's finish
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await monitor.aclose()
    mine = [c for c in seen if any(p in a for a in c for p in prefixes)]
    assert any(c[0].upper() == "PEXPIRE" for c in mine)  # the run's finish was watched
    assert not [c for c in mine if any(":out:" in a for a in c)]
    with_out = [c for c in mine if "out" in c[2:]]
    assert with_out and all(c[0].upper() == "HMGET" and len(c) > 4 for c in with_out)
