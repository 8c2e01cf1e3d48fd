"""Runs in production-like use: rolling deploys, cancel reasons, counters, forgotten
awaits, argument errors, child failures, error messages, serializer (issue 11)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from helpers import wait_for

from stackshift_redis import (
    InvalidRunStateError,
    PayloadError,
    RunCancelled,
    RunContext,
    RunFailed,
    RunNotFoundError,
    StackShift,
    StackShiftError,
)
from stackshift_redis._core.serializer import MsgpackSerializer


async def test_a_run_of_an_unknown_job_is_handed_back_to_a_worker_that_has_it(
    make_app: Callable[..., StackShift], running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    old = make_app()
    old.job("other", lambda ctx: None, queue="q")
    caplog.set_level(logging.WARNING, "stackshift.worker")  # one WARNING per run
    running_worker(old, queues=["q"])
    run = await old.start("renamed", 7, queue_name="q")  # only the new deploy has it
    await wait_for(lambda: "job 'renamed' is not registered in this worker" in caplog.text)
    assert await run.status() in ("scheduled", "queued", "running")
    new = make_app(old.namespace)
    new.job("renamed", lambda ctx: ctx.payload * 2, queue="q")
    running_worker(new, queues=["q"])
    assert await run.result(timeout=20) == 14
    info = await new.get_run(run.id)
    assert info is not None and any(e["type"] == "handed_back" for e in info.timeline)


async def test_a_run_nobody_can_execute_fails_after_the_hand_back_limit(
    app: StackShift, running_worker: Any
) -> None:
    app.job("known", lambda ctx: None, queue="q")
    running_worker(app, queues=["q"], handback_limit=1.5)
    run = await app.start("ghost", queue_name="q")
    with pytest.raises(RunFailed) as caught:
        await run.result(timeout=20)
    assert caught.value.error["type"] == "UnknownJobError"
    assert "'ghost' is not registered" in caught.value.error["message"]


async def test_cancel_reason_reaches_the_handle_and_info(
    app: StackShift, running_worker: Any
) -> None:
    seen: dict[str, Any] = {}

    @app.job("loop")
    async def loop(ctx: RunContext) -> None:
        seen["before"] = ctx.cancelled
        await app.redis.set(f"obs:{{{app.namespace}}}:in", 1)
        for _ in range(500):  # a long loop without steps
            ctx.check_cancelled()
            await asyncio.sleep(0.02)
        seen["finished"] = True

    @app.job("plain")
    def plain(ctx: Any) -> None:
        while not ctx.cancelled:
            __import__("time").sleep(0.02)
        ctx.check_cancelled()

    queued = await app.start("loop", delay=60)
    assert await app.cancel(queued.id, reason="customer closed the account") is True
    with pytest.raises(RunCancelled, match="customer closed the account"):
        await queued.result(timeout=5)
    info = await app.get_run(queued.id)
    assert info is not None and info.error == {
        "type": "RunCancelled",
        "message": "customer closed the account",
        "traceback": "",
    }
    running_worker(app)
    for job in ("loop", "plain"):
        run = await app.start(job)
        await wait_for(lambda r=run: _status_is(r, "running"), 10)
        await asyncio.sleep(0.1)
        assert await app.cancel(run.id, reason=f"stop {job}") is True
        with pytest.raises(RunCancelled, match=f"stop {job}"):
            await run.result(timeout=10)
        info = await app.get_run(run.id)
        assert info is not None and info.error is not None
        assert info.error["message"] == f"stop {job}"
    assert seen == {"before": False}


async def _status_is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


async def test_counters_agree_and_a_completed_run_has_no_error(
    app: StackShift, running_worker: Any
) -> None:
    attempts: list[int] = []

    @app.job("flaky", retries=2, backoff=0.01)
    async def flaky(ctx: RunContext) -> str:
        attempts.append(ctx.attempt)
        await ctx.step.run("z-first", lambda: 1)
        await ctx.step.sleep("a-nap", 0.05)
        await ctx.step.run("m-last", lambda: 2)
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    running_worker(app)
    run = await app.start("flaky")
    assert await run.result(timeout=15) == "ok"
    info = await app.get_run(run.id)
    assert info is not None
    assert attempts[-1] == info.attempts == 2
    assert info.executions == 3  # attempt 1, its resume after the sleep, attempt 2
    assert info.error is None  # the first attempt's error stays in the timeline only
    assert any(e["type"] == "retrying" for e in info.timeline)
    assert list(info.steps) == ["z-first", "a-nap", "m-last"]


async def test_a_forgotten_await_fails_the_attempt_without_retries(
    app: StackShift, running_worker: Any
) -> None:
    charged: list[int] = []

    @app.job("checkout", retries=3)
    async def checkout(ctx: RunContext) -> str:
        ctx.step.run("charge", lambda: charged.append(1))  # type: ignore[unused-coroutine]
        return "done"

    running_worker(app)
    run = await app.start("checkout")
    with pytest.raises(RunFailed, match="step 'charge' was created but never awaited"):
        await run.result(timeout=10)
    info = await app.get_run(run.id)
    assert info is not None and info.attempts == 1 and charged == []


async def test_argument_errors_and_child_failures_are_not_retried(
    app: StackShift, running_worker: Any
) -> None:
    tries: dict[str, int] = {}

    @app.job("napper", retries=3)
    async def napper(ctx: RunContext) -> None:
        tries["napper"] = tries.get("napper", 0) + 1
        await ctx.step.sleep("nap", "5s")  # type: ignore[arg-type]

    @app.job("child", retries=0)
    async def child(ctx: RunContext) -> None:
        raise ValueError("child broke")

    @app.job("parent", retries=3)
    async def parent(ctx: RunContext) -> Any:
        tries["parent"] = tries.get("parent", 0) + 1
        return await ctx.step.invoke("kid", job="child")

    @app.job("careful", retries=3)
    async def careful(ctx: RunContext) -> Any:
        try:
            return await ctx.step.invoke("kid", job="child")
        except RunFailed:
            return "handled"

    running_worker(app)
    napping = await app.start("napper")
    with pytest.raises(RunFailed, match="sleep"):
        await napping.result(timeout=10)
    par = await app.start("parent")
    with pytest.raises(RunFailed, match="child broke"):
        await par.result(timeout=15)
    assert await (await app.start("careful")).result(timeout=15) == "handled"
    assert tries == {"napper": 1, "parent": 2}  # parent: the invoke, then the resume


async def test_error_messages_say_what_to_do(app: StackShift, running_worker: Any) -> None:
    async def fetch() -> int:
        return 1

    @app.job("sync_handler", retries=3)
    def sync_handler(ctx: Any) -> Any:
        return ctx.step.run("fetch", fetch)

    class Money:
        pass

    @app.job("bad_return")
    async def bad_return(ctx: RunContext) -> Any:
        return {"total": Money()}

    running_worker(app)
    run = await app.start("sync_handler")
    with pytest.raises(RunFailed, match=r"fetch.* is async.*async def"):
        await run.result(timeout=10)
    run = await app.start("bad_return")
    with pytest.raises(RunFailed, match=r"return value\['total'\]: Money does not serialize"):
        await run.result(timeout=10)
    with pytest.raises(PayloadError, match=r"payload\['amount'\]\[1\]: Money does not"):
        await app.start("bad_return", {"amount": [1, Money()]})
    with pytest.raises(RunNotFoundError):
        await app.retry("no-such-run")
    done = await app.start("sync_handler", queue_name="nobody")
    with pytest.raises(InvalidRunStateError):
        await app.retry(done.id)
    assert issubclass(RunNotFoundError, StackShiftError)
    assert issubclass(InvalidRunStateError, StackShiftError)


async def test_decimal_uuid_date_and_time_round_trip(app: StackShift, running_worker: Any) -> None:
    value = {
        "price": Decimal("19.99"), "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "day": date(2027, 1, 31), "at": time(13, 45, 30, 250), "when": datetime(2027, 1, 1),
        "tuple": (1, 2),
    }  # fmt: skip
    s = MsgpackSerializer()
    back = s.loads(s.dumps(value))
    assert back == {**value, "tuple": [1, 2]}  # tuples come back as lists
    assert type(back["price"]) is Decimal and type(back["day"]) is date

    @app.job("echo")
    async def echo(ctx: RunContext) -> Any:
        stored = await ctx.step.run("s", lambda: ctx.payload["price"] * 2)
        return {**ctx.payload, "double": stored}

    running_worker(app)
    result = await (await app.start("echo", value)).result(timeout=10)
    assert result == {**value, "tuple": [1, 2], "double": Decimal("39.98")}
