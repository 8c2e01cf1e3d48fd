"""on_failure: one failure-handler run per run that fails for good, started by the script
that records the failure (retries spent, non-retriable, timeout, poison; not cancelled)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import namespace_keys, wait_for

from stackshift_redis import (
    InvalidArgumentError,
    NonRetriableError,
    RunContext,
    RunFailed,
    StackShift,
)
from stackshift_redis._core.scripts import FailRequest
from stackshift_redis._core.serializer import MsgpackSerializer
from stackshift_redis.testing import TestEnv, fake_redis


async def _handler_runs(app: StackShift, job: str) -> list[str]:
    page = await app.list_runs(job=job, limit=1000)  # every status, read at once
    return sorted(r.id for r in page)


def _register_handler(app: StackShift, seen: list[dict[str, Any]], **kw: Any) -> None:
    @app.job("on-fail", queue="handlers", **kw)
    async def on_fail(ctx: RunContext) -> None:
        seen.append(ctx.payload)


async def test_retries_spent_start_one_handler_with_the_payload(
    app: StackShift, running_worker: Any
) -> None:
    seen: list[dict[str, Any]] = []
    _register_handler(app, seen)

    @app.job("checkout", retries=2, backoff=0.01, on_failure="on-fail")
    async def checkout(ctx: RunContext) -> None:
        raise RuntimeError(f"card declined {ctx.attempt}")

    run = await app.start("checkout", {"order": "o_1", "n": [1, 2]})
    running_worker(app)
    with pytest.raises(RunFailed):
        await run.result(timeout=10)
    await wait_for(lambda: len(seen) == 1)
    assert seen == [{
        "run_id": run.id, "job": "checkout", "payload": {"order": "o_1", "n": [1, 2]},
        "error": {"type": "RuntimeError", "message": "card declined 3"},
    }]  # fmt: skip
    [handler_id] = await _handler_runs(app, "on-fail")
    info = await app.get_run(run.id)
    assert info is not None and info.timeline[-1]["type"] == "failed"
    assert info.timeline[-1]["on_failure_run"] == handler_id
    await asyncio.sleep(0.3)
    assert len(seen) == 1 and len(await _handler_runs(app, "on-fail")) == 1


async def test_non_retriable_and_timeout_start_a_handler_cancel_does_not(
    app: StackShift, running_worker: Any
) -> None:
    seen: list[dict[str, Any]] = []
    _register_handler(app, seen)

    @app.job("declined", retries=5, on_failure="on-fail")
    async def declined(ctx: RunContext) -> None:
        raise NonRetriableError("no funds")

    @app.job("slow", retries=0, timeout=0.1, on_failure="on-fail")
    async def slow(ctx: RunContext) -> None:
        await asyncio.sleep(5)

    @app.job("later", on_failure="on-fail")
    async def later(ctx: RunContext) -> None:
        return None

    parked = await app.start("later", delay=60)
    assert await app.cancel(parked.id)
    a, b = await app.start("declined", 1), await app.start("slow", 2)
    running_worker(app)
    await wait_for(lambda: len(seen) == 2)
    by_job = {p["job"]: p for p in seen}
    assert by_job["declined"]["error"] == {"type": "NonRetriableError", "message": "no funds"}
    assert by_job["slow"]["error"]["type"] == "TimeoutError"
    assert {p["run_id"] for p in seen} == {a.id, b.id}
    await asyncio.sleep(0.3)
    assert len(seen) == 2  # the cancelled run started none


async def test_poison_starts_a_handler(app: StackShift, running_worker: Any) -> None:
    seen: list[dict[str, Any]] = []
    _register_handler(app, seen)
    app.job("crashy", lambda ctx: None, on_failure="on-fail")
    run = await app.start("crashy", "p")
    await app.redis.hset(app._core.keys_of(run.id).run(run.id), "deliveries", app.max_deliveries)
    running_worker(app)
    await wait_for(lambda: len(seen) == 1)
    assert seen[0]["error"]["type"] == "PoisonRunError"
    assert seen[0]["payload"] == "p" and seen[0]["run_id"] == run.id


async def test_a_replayed_fail_call_starts_no_second_handler(app: StackShift) -> None:
    app.job("on-fail", lambda ctx: None, queue="handlers")
    app.job("j", lambda ctx: None, on_failure="on-fail")
    for h in {k.on_failure() for k in [app._core.keys, *app._core.part_keys]}:
        await app.redis.hset(h, "j", "on-fail")  # as a worker publishes (every partition)
    run = await app.start("j")
    scripts = app._core.scripts_of(run.id)
    [taken] = (await scripts.take([("default", 30_000)], 1, max_deliveries=5,
                                  retention_ms=60_000)).taken  # fmt: skip
    err = '{"type": "ValueError", "message": "bad", "traceback": ""}'
    call = scripts.fail_call(
        FailRequest(
            run_id=run.id, token=taken.token, error_json=err, outcome="failed", retention_ms=60_000
        )
    )
    assert await scripts.run_batch([call]) == [b"failed"]
    # a lost reply: the call sent again is recognised as done and writes nothing
    assert await scripts.run_batch([call]) == [b"failed"]
    assert len(await _handler_runs(app, "on-fail")) == 1
    [hid] = await _handler_runs(app, "on-fail")
    handler = await app.get_run(hid)
    assert handler is not None and handler.queue == "default"  # no queue published for it
    assert handler.payload["error"] == {"type": "ValueError", "message": "bad"}
    info = await app.get_run(run.id)
    assert info is not None and [e["type"] for e in info.timeline].count("failed") == 1


async def test_a_failing_handler_starts_no_handler_and_a_manual_retry_gets_a_new_one(
    app: StackShift, running_worker: Any
) -> None:
    calls: list[str] = []

    @app.job("a", retries=0, on_failure="b")
    async def a(ctx: RunContext) -> None:
        raise RuntimeError("a broke")

    @app.job("b", retries=0, on_failure="a")  # a loop a -> b -> a is cut at the handler
    async def b(ctx: RunContext) -> None:
        calls.append(ctx.payload["run_id"])
        raise RuntimeError("b broke too")

    run = await app.start("a")
    running_worker(app)
    await wait_for(lambda: len(calls) == 1)
    await asyncio.sleep(0.3)
    assert len(calls) == 1 and len(await _handler_runs(app, "a")) == 1  # only the original
    await app.retry(run.id)  # fails again: a new failure, a new handler run
    await wait_for(lambda: len(calls) == 2)
    assert calls == [run.id, run.id]


async def test_bad_on_failure_is_refused_at_registration(app: StackShift) -> None:
    before = await namespace_keys(app)
    with pytest.raises(InvalidArgumentError, match="on_failure"):
        app.job("self", lambda ctx: None, on_failure="self")
    with pytest.raises(InvalidArgumentError, match="on_failure"):
        app.job("bad", lambda ctx: None, on_failure="no spaces")

    class Json(MsgpackSerializer):
        pass

    class Other:
        def dumps(self, value: Any) -> bytes:
            return b""

        def loads(self, data: bytes) -> Any:
            return None

    custom = StackShift(redis=app.redis, namespace=app.namespace, serializer=Other())
    with pytest.raises(InvalidArgumentError, match="msgpack"):
        custom.job("x", lambda ctx: None, on_failure="y")
    sub = StackShift(redis=app.redis, namespace=app.namespace, serializer=Json())
    sub.job("x", lambda ctx: None, on_failure="y")  # a msgpack subclass is fine
    assert "self" not in app.jobs and "bad" not in app.jobs
    assert await namespace_keys(app) == before


async def test_on_failure_pause_and_replay_under_testenv() -> None:
    app = StackShift(redis=fake_redis(), namespace="te")
    seen: list[dict[str, Any]] = []

    @app.job("pay", retries=0, on_failure="pay-failed")
    async def pay(ctx: RunContext) -> None:
        await ctx.step.run("reserve", lambda: 1)
        raise NonRetriableError("declined")

    @app.job("pay-failed")
    async def pay_failed(ctx: RunContext) -> None:
        seen.append(ctx.payload)

    async with TestEnv(app) as env:
        run = await app.start("pay", {"o": 1})
        await env.drain()
        assert [p["run_id"] for p in seen] == [run.id]
        await app.pause_queue("default")
        held = await app.start("pay", {"o": 2})
        await env.drain()
        assert await held.status() == "queued"
        await app.resume_queue("default")
        await env.drain()
        again = await app.replay(run.id, from_step="reserve")
        await env.drain()
        info = await again.info()
        assert info is not None and info.replay_of == run.id and info.status == "failed"
        assert len(seen) == 3
    await app.close()
