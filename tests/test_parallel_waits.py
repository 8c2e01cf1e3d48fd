"""Durable waits in parallel (issue 11, item 8): waits begun together in asyncio.gather
park together in one call, children invoked together run in parallel, the run resumes
when the first awaited wait settles and parks again for the rest, and a race
(asyncio.wait FIRST_COMPLETED) finishes without the losing wait. All on real Redis with
real workers, plus script-level checks of re-sent calls, recovery and upgrades."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import time
from typing import Any

from helpers import wait_for

from stackshift_redis import RunContext, RunFailed, StackShift
from stackshift_redis._core.records import record_prefix, step_completed
from stackshift_redis._core.scripts import InvokeRequest, SleepRequest


async def _is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


def _types(info: Any) -> list[str]:
    return [e["type"] for e in info.timeline]


def _count_parks(app: StackShift) -> list[list[str]]:
    """Record every `park` call of the app's scripts (the steps it was called with)."""
    calls: list[list[str]] = []
    for part in range(app._core.partitions):  # every partition's scripts (one with P = 1)
        scripts = app._core.part_scripts(part)

        def counting(park: Any) -> Any:
            async def counted(run_id: str, token: str, steps: list[str]) -> Any:
                calls.append(list(steps))
                return await park(run_id, token, steps)

            return counted

        scripts.park = counting(scripts.park)  # type: ignore[method-assign]
    return calls


async def test_children_invoked_in_one_gather_run_in_parallel(
    app: StackShift, running_worker: Any
) -> None:
    spans: list[tuple[str, float, float]] = []

    @app.job("child")
    async def child(ctx: RunContext) -> str:
        t0 = time.monotonic()
        await asyncio.sleep(2.0)  # plain work, not a durable wait (long: claims may lag)
        spans.append((ctx.payload, t0, time.monotonic()))
        return f"done {ctx.payload}"

    @app.job("parent")
    async def parent(ctx: RunContext) -> list[str]:
        return list(await asyncio.gather(
            ctx.step.invoke("a", "child", "a"),
            ctx.step.invoke("b", "child", "b"),
            ctx.step.invoke("c", "child", "c"),
        ))  # fmt: skip

    parks = _count_parks(app)
    run = await app.start("parent")
    running_worker(app, concurrency=4)
    assert await run.result(timeout=20) == ["done a", "done b", "done c"]
    assert sorted(s[0] for s in spans) == ["a", "b", "c"]  # each child ran once
    starts, ends = [s[1] for s in spans], [s[2] for s in spans]
    assert max(starts) < min(ends), f"the children did not overlap: {spans}"
    assert parks[0] == ["a", "b", "c"]  # one park for the three waits
    info = await app.get_run(run.id)
    assert info is not None
    types = _types(info)
    assert types.count("child_started") == 3
    assert types.index("waiting") > max(i for i, t in enumerate(types) if t == "child_started")
    first_wait = next(e for e in info.timeline if e["type"] == "waiting")
    assert first_wait["steps"] == ["a", "b", "c"] and first_wait["count"] == 3
    assert sorted(info.steps) == ["a", "b", "c"]  # in the order they settled


async def test_sleep_and_event_in_one_gather_wait_for_both(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        _, evt = await asyncio.gather(
            ctx.step.sleep("nap", 1.0),
            ctx.step.wait_for_event("go", "go", match={"id": ctx.payload}, timeout=30),
        )
        return evt.data["v"] if evt else None

    run = await app.start("j", 5)
    running_worker(app)
    await wait_for(lambda: _is(run, "waiting"))
    t0 = time.monotonic()
    sent = await app.send_event("go", {"id": 5, "v": "yes"})
    assert sent.resumed == [run.id]
    # resumed by the event, the run parks again for the sleep that is not over
    await wait_for(lambda: app.get_run(run.id), 5)
    assert await run.result(timeout=10) == "yes"
    info = await app.get_run(run.id)
    assert info is not None
    waits = [e for e in info.timeline if e["type"] == "waiting"]
    assert waits[0]["steps"] == ["nap", "go"] and waits[0]["kinds"] == ["sleep", "event"]
    assert "sleep_done" in _types(info) and "event_received" in _types(info)
    assert time.monotonic() - t0 < 5
    assert await app.redis.exists(app._core.keys_of(run.id).event_shapes("go")) == 0


async def test_a_race_finishes_with_the_first_wait_and_drops_the_other(
    app: StackShift, running_worker: Any, caplog: Any
) -> None:
    after_wait: list[set[str]] = []

    @app.job("race")
    async def race(ctx: RunContext) -> str:
        event = asyncio.ensure_future(ctx.step.wait_for_event("paid", "paid", {"order": 1}))
        timer = asyncio.ensure_future(ctx.step.sleep("deadline", 3600))
        done, _ = await asyncio.wait({event, timer}, return_when=asyncio.FIRST_COMPLETED)
        after_wait.append({"event" if t is event else "timer" for t in done})  # plain code
        if event in done:
            timer.cancel()
            return "paid"
        return "expired"

    run = await app.start("race")
    running_worker(app)
    await wait_for(lambda: _is(run, "waiting"))
    delayed = app._core.keys_of(run.id).delayed("default")
    assert await app.redis.zcard(delayed) == 1  # the deadline's timer
    gc.collect()  # a task whose exception nobody read would be reported now
    assert after_wait == []  # parking stopped the handler inside asyncio.wait
    await app.send_event("paid", {"order": 1})
    assert await run.result(timeout=10) == "paid"  # not an hour later
    assert after_wait == [{"event"}]
    fields = await app.redis.hkeys(app._core.keys_of(run.id).run(run.id))
    assert not [f for f in fields if f.startswith((b"w:", b"wait_n"))]
    assert await app.redis.zcard(delayed) == 0
    assert await app.redis.exists(app._core.keys_of(run.id).event_shapes("paid")) == 0
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_child_starts_while_a_step_of_the_same_gather_runs(
    app: StackShift, running_worker: Any
) -> None:
    seen: dict[str, float] = {}

    @app.job("kid")
    async def kid(ctx: RunContext) -> int:
        seen["kid"] = time.monotonic()
        return 2

    async def slow() -> int:
        await asyncio.sleep(2.0)  # the child's claim may lag on a loaded machine
        seen["step_end"] = time.monotonic()
        return 1

    @app.job("p")
    async def p(ctx: RunContext) -> int:
        a, b = await asyncio.gather(ctx.step.run("work", slow), ctx.step.invoke("k", "kid"))
        return int(a) + int(b)

    run = await app.start("p")
    running_worker(app, concurrency=2)
    assert await run.result(timeout=10) == 3
    assert seen["kid"] < seen["step_end"]  # the child did not wait for the step


async def test_a_lone_wait_registers_and_parks_in_one_call(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("j")
    async def j(ctx: RunContext) -> str:
        await ctx.step.sleep("one", 0.2)
        await ctx.step.sleep("two", 0.2)
        return "ok"

    parks = _count_parks(app)
    run = await app.start("j")
    running_worker(app)
    assert await run.result(timeout=10) == "ok"
    assert parks == []  # each sleep parked in its own registering call
    info = await app.get_run(run.id)
    assert info is not None and _types(info).count("waiting") == 2


async def test_fan_out_of_twenty_children(app: StackShift, running_worker: Any) -> None:
    ran: list[int] = []

    @app.job("sq")
    async def sq(ctx: RunContext) -> int:
        ran.append(ctx.payload)
        return int(ctx.payload) ** 2

    @app.job("fan")
    async def fan(ctx: RunContext) -> int:
        parts = await asyncio.gather(*(ctx.step.invoke(f"sq{i}", "sq", i) for i in range(20)))
        return sum(parts)

    run = await app.start("fan")
    running_worker(app, concurrency=8)
    assert await run.result(timeout=30) == sum(i * i for i in range(20))
    assert sorted(ran) == list(range(20))  # each child ran once
    info = await app.get_run(run.id)
    assert info is not None and info.status == "completed"


async def test_a_failed_child_of_a_gather_fails_the_parent(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("ok")
    async def ok(ctx: RunContext) -> str:
        return "fine"

    @app.job("bad")
    async def bad(ctx: RunContext) -> None:
        raise ValueError("broken")

    @app.job("p")
    async def p(ctx: RunContext) -> Any:
        return await asyncio.gather(ctx.step.invoke("a", "ok"), ctx.step.invoke("b", "bad"))

    run = await app.start("p")
    running_worker(app)
    try:
        await run.result(timeout=10)
        raise AssertionError("the parent should fail")
    except RunFailed as exc:
        assert "broken" in str(exc)


async def test_cancelling_a_parent_cancels_every_child_it_waits_for(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("waiter")
    async def waiter(ctx: RunContext) -> None:
        await ctx.step.wait_for_event("w", "never", match={"id": ctx.payload})

    @app.job("parent")
    async def parent(ctx: RunContext) -> None:
        await asyncio.gather(*(ctx.step.invoke(f"c{i}", "waiter", i) for i in range(3)))

    run = await app.start("parent")
    running_worker(app, concurrency=4)
    await wait_for(lambda: _is(run, "waiting"))
    await wait_for(lambda: _count(app, "waiter", "waiting", 3))
    assert await app.cancel(run.id, reason="stop") is True
    children = await app.list_runs(job="waiter")
    assert sorted(c.status for c in children) == ["cancelled"] * 3
    assert await app.redis.hgetall(app._core.keys_of(run.id).event_shapes("never")) == {}


async def _count(app: StackShift, job: str, status: str, n: int) -> bool:
    return len(await app.list_runs(job=job, status=status)) == n


async def _take_one(app: StackShift, part: int = 0) -> Any:
    """Take one run of partition `part`'s default queue (its only one with P = 1)."""
    reply = await app._core.part_scripts(part).take(
        [("default", 30_000)], 1, max_deliveries=5, retention_ms=60_000, taker="t"
    )
    [taken] = reply.taken
    return taken


async def test_registered_waits_survive_a_lost_attempt(app: StackShift) -> None:
    """A worker registers two waits and dies before it parks: the next attempt finds them
    registered (no second child), and a child that finished meanwhile is settled."""
    app.job("kid", lambda ctx: None)
    app.job("p", lambda ctx: None)
    part = app._core.part_of((await app.start("p")).id)
    sc, k = app._core.part_scripts(part), app._core.part_keys[part]
    t = await _take_one(app, part)
    recs = (step_completed(b"\xc0"), record_prefix("completed", "result"), b"")

    def invoke() -> InvokeRequest:
        return InvokeRequest(
            run_id=t.run_id,
            token=t.token,
            step="a",
            job="kid",
            queue="default",
            child_id=app._core.new_run_id(part),
            payload=b"\xc0",
            timeout_ms=-1,
            idem_ttl_ms=60_000,
            records=recs,
        )

    first = await sc.invoke(invoke())
    again = await sc.invoke(invoke())  # re-sent after a lost reply: same child
    assert first.outcome == again.outcome == "pending" and first.child == again.child
    none = step_completed(b"\xc0")
    assert (
        await sc.sleep(
            SleepRequest(
                run_id=t.run_id, token=t.token, step="s", rel_ms=60_000, until_ms=-1, record=none
            )
        )
    ).outcome == ("pending")
    await app.redis.zadd(k.leases("default"), {t.run_id: 1})  # its worker died
    assert await sc.reclaim("default", 60_000) == [t.run_id]
    kid = await _take_one(app, part)
    assert kid.run_id == first.child
    done = sc.complete_call(kid.run_id, kid.token, b"\xa2ok", 60_000)
    await sc.run_batch([done])
    again_p = await _take_one(app, part)
    assert again_p.run_id == t.run_id and sorted(again_p.pending) == ["s"]
    assert [s.decode() for s in again_p.steps[::2]] == ["a"]  # settled while queued
    reply = await sc.park(again_p.run_id, again_p.token, ["s"])
    assert reply.parked
    assert await app.get_run(t.run_id) is not None
    assert await app.run(t.run_id).status() == "waiting"


async def test_a_run_parked_by_the_previous_version_resumes(app: StackShift) -> None:
    """Upgrade: a run parked with the single-wait fields of the previous version resumes
    on an event (its waiter set member is the bare run id)."""
    app.job("j", lambda ctx: None)
    run = await app.start("j")
    t = await _take_one(app, app._core.part_of(run.id))
    k = app._core.keys_of(run.id)
    shape, vkey = "id", json.dumps(["1"])
    rk = k.run(run.id)
    await app.redis.hset(rk, mapping={
        "status": "waiting", "wait_kind": "event", "wait_step": "w", "wait_event": "e",
        "wait_shape": shape, "wait_values": vkey, "wait_timeout_rec": step_completed(b"\xc0"),
        "wait_ok_rec": record_prefix("completed", "result"),
    })  # fmt: skip
    await app.redis.zrem(k.leases("default"), t.run_id)
    await app.redis.sadd(k.event_waiters("e", shape, vkey), run.id)
    await app.redis.hset(k.event_shapes("e"), shape, 1)
    from stackshift_redis._client.events import match_key

    real_shape, real_vkey = match_key({"id": 1})
    if (real_shape, real_vkey) != (shape, vkey):  # use the real encoding of the match
        await app.redis.delete(k.event_waiters("e", shape, vkey), k.event_shapes("e"))
        await app.redis.hset(rk, mapping={"wait_shape": real_shape, "wait_values": real_vkey})
        await app.redis.sadd(k.event_waiters("e", real_shape, real_vkey), run.id)
        await app.redis.hset(k.event_shapes("e"), real_shape, 1)
    sent = await app.send_event("e", {"id": 1})
    assert sent.resumed == [run.id]
    assert await run.status() == "queued"
    fields = await app.redis.hkeys(rk)
    assert b"s:w" in fields and b"wait_kind" not in fields and b"w:w" not in fields
    assert await app.redis.hgetall(k.event_shapes("e")) == {}


async def test_a_run_cancelled_before_it_parks_is_cancelled_not_parked(
    app: StackShift, running_worker: Any
) -> None:
    @app.job("forever")
    async def forever(ctx: RunContext) -> None:
        await ctx.step.wait_for_event("w", "never", match={"id": 1})

    async def slow() -> int:
        await asyncio.sleep(8.0)  # outlasts the child's start and park, even when loaded
        return 1

    @app.job("p")
    async def p(ctx: RunContext) -> Any:
        return await asyncio.gather(ctx.step.run("work", slow), ctx.step.invoke("k", "forever"))

    run = await app.start("p")
    running_worker(app, concurrency=4)
    await wait_for(lambda: _count(app, "forever", "waiting", 1))
    assert await run.status() == "running"  # the step runs; the child's wait is pending
    assert await app.cancel(run.id, reason="enough") is True
    await wait_for(lambda: _is(run, "cancelled"), 20)
    info = await app.get_run(run.id)
    assert info is not None and "waiting" not in _types(info)
    assert info.error is not None and "enough" in str(info.error)
    [child] = await app.list_runs(job="forever")
    assert child.status == "cancelled"  # the child it waited for went with it


async def test_a_killed_worker_leaves_registered_waits_that_the_next_attempt_reuses(
    app: StackShift, redis_url: str, procs: list[Any]
) -> None:
    """A worker process is SIGKILLed while the parent's gather runs a slow step next to
    three invoked children; another worker recovers the parent: it starts no second
    child, awaits the registered ones and finishes."""
    from helpers import observed, spawn_worker

    run = await app.start("fan_parent", queue_name="fanout")
    procs.append(spawn_worker(redis_url, app.namespace, "--queue", "fanout",
                              env={"FAN_SLOW": "60"}))  # fmt: skip
    await wait_for(lambda: _count_all(app, "fan_child", 3), 20)
    await wait_for(lambda: _count(app, "fan_child", "completed", 3), 20)
    assert await run.status() == "running"  # the slow step runs; its waits are registered
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    procs.append(spawn_worker(redis_url, app.namespace, "--queue", "fanout"))
    assert await app.run(run.id).result(timeout=30) == [1, 0, 10, 20]
    assert await _count_all(app, "fan_child", 3)  # no second child
    assert await observed(app, "fan_slow") == 2  # the unfinished step ran again
    info = await app.get_run(run.id)
    assert info is not None and info.executions == 2


async def _count_all(app: StackShift, job: str, n: int) -> bool:
    return len(await app.list_runs(job=job)) == n


async def test_a_wait_whose_branch_is_cancelled_is_dropped_at_the_next_park(
    app: StackShift, running_worker: Any
) -> None:
    async def work() -> int:
        await asyncio.sleep(0.3)
        return 1

    @app.job("j")
    async def j(ctx: RunContext) -> str:
        wait = asyncio.ensure_future(ctx.step.wait_for_event("w", "late", {"id": 1}))
        step = asyncio.ensure_future(ctx.step.run("work", work))
        await asyncio.wait({wait, step}, return_when=asyncio.FIRST_COMPLETED)
        wait.cancel()  # the event is no longer wanted
        await ctx.step.sleep("after", 3.0)  # still parked when the test looks, even if loaded
        return "done"

    run = await app.start("j")
    running_worker(app)
    await wait_for(lambda: _is(run, "waiting"))
    fields = await app.redis.hkeys(app._core.keys_of(run.id).run(run.id))
    assert b"w:after" in fields and b"w:w" not in fields  # dropped when the run parked
    assert (await app.send_event("late", {"id": 1})).resumed == []
    assert await run.result(timeout=10) == "done"


async def test_a_parent_parked_by_the_previous_version_resumes_when_its_child_ends(
    app: StackShift,
) -> None:
    """Upgrade: a parent parked with the previous version's single-wait fields (waiting
    for a child) is settled and resumed when the child completes."""
    app.job("p", lambda ctx: None)
    app.job("kid", lambda ctx: None)
    parent = await app.start("p", partition_key="pk")  # with its child (partitions)
    part = app._core.part_of(parent.id)
    await _take_one(app, part)
    k = app._core.part_keys[part]
    await app.redis.zrem(k.leases("default"), parent.id)
    child = await app.start("kid", partition_key="pk")
    await app.redis.hset(k.run(child.id), mapping={"parent": parent.id, "parent_step": "c"})
    await app.redis.hset(k.run(parent.id), mapping={
        "status": "waiting", "wait_kind": "child", "wait_step": "c", "wait_child": child.id,
        "wait_timeout_rec": step_completed(b"\xc0"),
        "wait_ok_rec": record_prefix("completed", "result"),
        "wait_fail_rec": record_prefix("failed", "error"),
    })  # fmt: skip
    t = await _take_one(app, part)
    assert t.run_id == child.id
    done = app._core.part_scripts(part).complete_call(t.run_id, t.token, b"\xa2ok", 60_000)
    await app._core.part_scripts(part).run_batch([done])
    assert await parent.status() == "queued"
    fields = await app.redis.hkeys(k.run(parent.id))
    assert b"s:c" in fields and b"wait_kind" not in fields and b"w:c" not in fields
