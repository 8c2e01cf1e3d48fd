"""Bad arguments raise InvalidArgumentError naming the argument and write nothing."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from helpers import namespace_keys

from stackshift_redis import StackShift
from stackshift_redis.errors import InvalidArgumentError


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"max_deliveries": -1}, "max_deliveries"),
        ({"max_deliveries": "5"}, "max_deliveries"),
        ({"max_deliveries": True}, "max_deliveries"),
        ({"max_payload_bytes": -1}, "max_payload_bytes"),
        ({"retention": math.inf}, "retention"),
        ({"retention": math.nan}, "retention"),
        ({"idempotency_ttl": float("inf")}, "idempotency_ttl"),
        ({"event_log_window": -timedelta(seconds=1)}, "event_log_window"),
        ({"redis_url": 5}, "redis_url"),
    ],
)
def test_app_options(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(InvalidArgumentError, match=word):
        StackShift(**kwargs)


def test_job_timeout_must_be_positive(app: StackShift) -> None:
    with pytest.raises(InvalidArgumentError, match="timeout"):
        app.job("j", lambda ctx: None, timeout=0)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        app.job("k", lambda ctx: None, timeout=math.inf)


CALLS: list[tuple[str, Callable[[StackShift], Awaitable[Any]], str]] = [
    ("get_run None", lambda a: a.get_run(None), "run_id"),  # type: ignore[arg-type]
    ("get_run int", lambda a: a.get_run(5), "run_id"),  # type: ignore[arg-type]
    ("cancel None", lambda a: a.cancel(None), "run_id"),  # type: ignore[arg-type]
    ("retry None", lambda a: a.retry(None), "run_id"),  # type: ignore[arg-type]
    ("start_many None", lambda a: a.start_many("j", None), "payloads"),  # type: ignore[arg-type]
    ("start_many int", lambda a: a.start_many("j", 5), "payloads"),  # type: ignore[arg-type]
    ("start inf delay", lambda a: a.start("j", delay=math.inf), "delay"),
    ("start nan delay", lambda a: a.start("j", delay=math.nan), "delay"),
    ("list_runs limit 0", lambda a: a.list_runs(limit=0), "limit"),
    ("list_runs limit -1", lambda a: a.list_runs(limit=-1), "limit"),
    ("list_runs limit str", lambda a: a.list_runs(limit="5"), "limit"),  # type: ignore[arg-type]
    ("state ttl inf", lambda a: a.state.set("k", 1, ttl=math.inf), "ttl"),
]


@pytest.mark.parametrize("label, call, word", CALLS, ids=[c[0] for c in CALLS])
async def test_bad_arguments_write_nothing(
    app: StackShift, label: str, call: Callable[[StackShift], Awaitable[Any]], word: str
) -> None:
    app.job("j", lambda ctx: None)
    with pytest.raises(InvalidArgumentError, match=word):
        await call(app)
    assert await namespace_keys(app) == []


async def test_incr_on_a_non_integer_names_the_state(app: StackShift) -> None:
    await app.state.set("greeting", "hello")
    with pytest.raises(InvalidArgumentError, match="state greeting is not an integer counter"):
        await app.state.incr("greeting")
    assert await app.state.get("greeting") == "hello"
