"""Job definitions in Redis, versions and patches, in one process (issue 24): validation,
which definition a caller applies (published over local; none: wave 1's rule), a changed
definition reaches a caller that cached the old one (STALE), callable keys, patches in
sync handlers and parallel steps."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from helpers import namespace_keys, wait_for

from stackshift_redis import Concurrency, InvalidArgumentError, RunContext, StackShift
from stackshift_redis.testing import TestEnv


async def _fields(app: StackShift, run_id: str, *names: str) -> list[Any]:
    return list(await app.redis.hmget(app._core.keys_of(run_id).run(run_id), *names))


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.5])
def test_version_must_be_an_int_of_at_least_one(bad: Any) -> None:
    app = StackShift("redis://localhost:1/0", namespace="v")
    with pytest.raises(InvalidArgumentError, match="version"):
        app.job("j", lambda ctx: None, version=bad)


def test_several_versions_of_one_job_and_the_highest_is_its_definition() -> None:
    app = StackShift("redis://localhost:1/0", namespace="v")
    app.job("j", lambda ctx: 2, version=2, queue="new")
    app.job("j", lambda ctx: 1, version=1, queue="old")
    assert app.jobs["j"].version == 2 and app.jobs["j"].queue == "new"
    with pytest.raises(InvalidArgumentError, match="version 2"):
        app.job("j", lambda ctx: 3, version=2)


async def test_bad_version_on_start_writes_nothing(app: StackShift) -> None:
    with pytest.raises(InvalidArgumentError, match="version"):
        await app.start("j", queue_name="q", version=0)
    assert await namespace_keys(app) == []


async def test_the_published_definition_wins_and_a_change_reaches_cached_callers(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    worker_app = make_app()
    worker_app.job("sync", lambda ctx: None, queue="w", concurrency=Concurrency(3, key="t"))
    caller = make_app(worker_app.namespace)
    caller.job("sync", lambda ctx: None, queue="c", concurrency=Concurrency(9, key="t"))
    first = await caller.start("sync", {"t": "a"}, delay=60)  # nothing published: local rules
    assert await _fields(caller, first.id, "queue", "slots") == [b"c", b'[["0:a",9]]']
    running_worker(worker_app, queues=["w"])
    await wait_for(lambda: caller.redis.hget(caller._core.keys.defs(), "sync"), 10)
    second = await caller.start("sync", {"t": "a"}, delay=60)  # cached: STALE, reloaded
    assert await _fields(caller, second.id, "queue", "slots") == [b"w", b'[["0:a",3]]']
    nameless = make_app(worker_app.namespace)  # knows only the name
    third = await nameless.start("sync", {"t": "b"}, delay=60)
    assert await _fields(nameless, third.id, "queue", "slots") == [b"w", b'[["0:b",3]]']


async def test_one_warning_per_unpublished_job_and_process(
    app: StackShift, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "stackshift.client")
    app.job("local", lambda ctx: None, queue="q")
    for _ in range(3):
        await app.start("local")
        await app.start("remote", queue_name="q")  # wave 1's rule: defaults and a warning
    text = caplog.text
    assert text.count("job 'local': no worker has published") == 1
    assert text.count("job 'remote': no worker has published") == 1


async def test_a_callable_key_is_refused_by_callers_without_the_job(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    worker_app = make_app()
    worker_app.job(
        "keyed", lambda ctx: None, queue="w", concurrency=Concurrency(1, key=lambda p: p["t"])
    )
    running_worker(worker_app, queues=["w"])
    await wait_for(lambda: worker_app.redis.hget(worker_app._core.keys.defs(), "keyed"), 10)
    published = json.loads(await worker_app.redis.hget(worker_app._core.keys.defs(), "keyed"))
    assert "callable" in published["flow"]["concurrency"][0]["key"]
    other = make_app(worker_app.namespace)
    before = await other.redis.hlen(other._core.keys.defs())
    with pytest.raises(InvalidArgumentError, match="dotted payload path"):
        await other.start("keyed", {"t": "a"})
    assert await other.redis.hlen(other._core.keys.defs()) == before
    assert await other.list_runs(job="keyed") == []
    run = await worker_app.start("keyed", {"t": "a"})  # it has the callable: it applies it
    assert await run.result(timeout=10) is None


async def test_unregister_job_removes_its_definition(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    worker_app = make_app()
    worker_app.job("gone", lambda ctx: None, queue="w")
    w = running_worker(worker_app, queues=["w"])
    await wait_for(lambda: worker_app.redis.hget(worker_app._core.keys.defs(), "gone"), 10)
    await w.stop()
    client = make_app(worker_app.namespace)
    assert (await client.start("gone", delay=60)).id  # the last definition stays in force
    await client.unregister_job("gone")
    assert await client.redis.hget(client._core.keys.defs(), "gone") is None


async def test_patched_in_sync_handlers_and_parallel_steps() -> None:
    app = StackShift("redis://localhost:1/0", namespace="patches")

    @app.job("par")
    async def par(ctx: RunContext) -> list[Any]:
        async def branch(name: str) -> bool:
            await ctx.step.run(name, lambda: name)
            return ctx.patched(f"p-{name}")

        got = await asyncio.gather(branch("a"), branch("b"))
        return [*got, ctx.patched("p-a"), ctx.version]

    @app.job("plain")
    def plain(ctx: Any) -> list[bool]:
        ctx.step.run("one", lambda: 1)
        return [ctx.patched("x"), ctx.patched("x")]

    async with TestEnv(app) as env:
        runs = [await app.start("par"), await app.start("plain")]
        await env.drain()
        assert await runs[0].result(timeout=5) == [True, True, True, 1]
        assert await runs[1].result(timeout=5) == [True, True]
        info = await app.get_run(runs[1].id)
        assert info is not None and info.steps["patched:x"]["result"] is True
        assert info.version == 1


async def test_patched_is_false_where_an_earlier_attempt_registered_a_wait_further_on() -> None:
    app = StackShift("redis://localhost:1/0", namespace="patches-wait")
    answers: list[bool] = []

    @app.job("pay", retries=1, backoff=0.01)
    async def pay(ctx: RunContext) -> Any:
        # attempt 1 is the old code (no patch); attempt 2 the deploy that added the patch
        answer = ctx.patched("p") if ctx.attempt > 1 else None
        if answer is not None:
            answers.append(answer)

        async def crash_once() -> None:
            await asyncio.sleep(0.3)  # the wait below registers meanwhile
            if ctx.attempt == 1:
                raise RuntimeError("crash after the wait was registered")

        await asyncio.gather(ctx.step.wait_for_event("paid", event="paid"), crash_once())
        return answer

    async with TestEnv(app) as env:
        run = await app.start("pay")
        await env.drain()
        await env.advance(1)  # the retry's backoff
        assert await run.status() == "waiting"
        assert (await app.send_event("paid", {})).resumed == [run.id]
        await env.drain()
        # the old code went past this point (its wait was registered): the old branch, in
        # the execution that parked on the wait and in the one the event resumed
        assert await run.result(timeout=5) is False
        # every execution of the new code answers False (usually two: the one that parked
        # and the one the event resumed; one when the event came before it parked)
        assert answers and set(answers) == {False}
        info = await app.get_run(run.id)
        assert info is not None and info.steps["patched:p"]["result"] is False


async def test_patched_past_a_registered_wait_on_real_redis(
    app: StackShift, running_worker: Any
) -> None:
    answers: list[bool] = []

    @app.job("pay", retries=1, backoff=0.01)
    async def pay(ctx: RunContext) -> Any:
        answer = ctx.patched("p") if ctx.attempt > 1 else None  # the deploy, as above
        if answer is not None:
            answers.append(answer)

        async def crash_once() -> None:
            await asyncio.sleep(0.3)
            if ctx.attempt == 1:
                raise RuntimeError("crash after the wait was registered")

        await asyncio.gather(ctx.step.wait_for_event("paid", event="paid"), crash_once())
        return answer

    run = await app.start("pay")
    running_worker(app)
    await wait_for(lambda: _parked_on_attempt_2(app, run.id), 20)
    assert (await app.send_event("paid", {})).resumed == [run.id]
    assert await run.result(timeout=20) is False
    assert answers == [False, False]


async def _parked_on_attempt_2(app: StackShift, run_id: str) -> bool:
    info = await app.get_run(run_id)
    return info is not None and info.status == "waiting" and info.attempts == 2


async def test_a_failure_handler_run_gets_its_published_queue_and_key_less_rules(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    worker_app = make_app()
    worker_app.job("pay", _fail, queue="w", retries=0, on_failure="pay-failed")
    worker_app.job(
        "pay-failed", lambda ctx: None, queue="h", priority=5, concurrency=Concurrency(1)
    )
    running_worker(worker_app, queues=["w"])  # the handler's queue is not consumed
    await wait_for(lambda: worker_app.redis.hget(worker_app._core.keys.defs(), "pay-failed"))
    caller = make_app(worker_app.namespace)
    await caller.start("pay", {"amount": 3})
    await wait_for(lambda: caller.list_runs(job="pay-failed"), 10)
    (handler,) = await caller.list_runs(job="pay-failed")
    fields = await _fields(caller, handler.id, "queue", "group", "slots", "priority")
    assert fields == [b"h", b"pay-failed/0:*", b'[["0:*",1]]', b"5"]


def _fail(ctx: Any) -> None:
    raise ValueError("declined")


async def test_dashboard_jobs_page_lists_versions_and_unfinished_runs(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    import httpx

    from stackshift_redis.dashboard import create_app

    worker_app = make_app()
    worker_app.job("vj", lambda ctx: None, queue="w", version=1)
    worker_app.job("vj", lambda ctx: None, queue="w", version=2)
    running_worker(worker_app, queues=["w"])
    await wait_for(lambda: worker_app.redis.hget(worker_app._core.keys.defs(), "vj"), 10)
    await worker_app.start("vj", delay=60, version=1)
    transport = httpx.ASGITransport(app=create_app(worker_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/jobs")
    assert page.status_code == 200
    assert 'id="jobs"' in page.text and "<td>vj</td>" not in page.text  # a link to its runs
    assert page.text.count(">vj</strong>") == 2  # one row per live version
