"""Shared queue settings, job map and triggers owned by live workers, unreachable Redis and
bad URLs (issue 11, items 3, 4, 10)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from helpers import wait_for
from redis_procs import free_port

from stackshift_redis import StackShift, StackShiftError, UnknownJobError
from stackshift_redis.errors import InvalidArgumentError, RedisUnavailableError


async def test_conflicting_queue_settings_warn_with_both_values(
    make_app: Callable[..., StackShift], running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_app()
    first.queue("heavy", concurrency=2, visibility_timeout=7)
    first.job("h", lambda ctx: None, queue="heavy")
    running_worker(first)
    conf = first._core.keys.queue_conf("heavy")
    await wait_for(lambda: first.redis.hget(conf, "concurrency"), 10)
    plain = make_app(first.namespace)  # a deploy that does not configure the queue
    plain.job("h", lambda ctx: None, queue="heavy")
    w = running_worker(plain)
    await wait_for(lambda: "heavy" in w.registration.confs, 10)
    assert w.registration.conf("heavy").visibility_timeout == 7  # adopted, not defaulted
    assert await first.redis.hget(conf, "concurrency") == b"2"  # not erased
    caplog.set_level(logging.WARNING, "stackshift.worker")
    other = make_app(first.namespace)
    other.queue("heavy", concurrency=3, visibility_timeout=7)
    other.job("h", lambda ctx: None, queue="heavy")
    running_worker(other)
    await wait_for(lambda: "concurrency 3 here differs from the published 2" in caplog.text, 10)
    assert await first.redis.hget(conf, "concurrency") == b"3"


async def test_entries_no_live_worker_registers_are_dropped(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    old = make_app()
    old.job("old", lambda ctx: "old", queue="q1", on_event="sig")
    w = running_worker(old)
    w.registration.ttl_ms = 300  # a short-lived registration (default: 20 s)
    await wait_for(lambda: old.redis.hget(old._core.keys.jobs(), "old"), 10)
    await w.stop()
    await asyncio.sleep(0.5)
    new = make_app(old.namespace)  # the next deploy renamed the job and moved it
    new.job("new", lambda ctx: "new", queue="q2", on_event="sig")
    running_worker(new)
    trig = old._core.keys.triggers("sig")
    await wait_for(lambda: _fields_are(old, trig, {b"new"}), 10)
    client = make_app(old.namespace)  # registers nothing itself
    sent = await client.send_event("sig", {"n": 1})
    assert len(sent.started) == 1
    info = await client.get_run(sent.started[0])
    assert info is not None and info.job == "new"
    # the last published definition stays in force while no worker of the job is live
    started = await client.start("old")
    assert (await client.get_run(started.id)).queue == "q1"  # type: ignore[union-attr]
    await client.unregister_job("old")  # an operator retires it: its definition goes too
    with pytest.raises(UnknownJobError):
        await client.start("old")


async def _fields_are(app: StackShift, key: str, expected: set[bytes]) -> bool:
    return set(await app.redis.hkeys(key)) == expected


async def test_unregister_job_drops_its_map_entry_and_triggers(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app()
    app.job("gone", lambda ctx: None, queue="q1", on_event="sig2")
    w = running_worker(app)
    await wait_for(lambda: app.redis.hget(app._core.keys.triggers("sig2"), "gone"), 10)
    await w.stop()
    client = make_app(app.namespace)
    assert await client.unregister_job("gone") == 2
    assert await client.redis.hget(client._core.keys.jobs(), "gone") is None
    assert await client.redis.hget(client._core.keys.triggers("sig2"), "gone") is None
    assert (await client.send_event("sig2", {})).started == []
    with pytest.raises(InvalidArgumentError):
        await client.unregister_job("bad name")


async def test_a_start_on_a_queue_nobody_consumes_warns(
    make_app: Callable[..., StackShift], running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    app.job("j", lambda ctx: 1)
    running_worker(app)
    await wait_for(lambda: app.redis.zscore(app._core.keys.qlive(), "default"), 10)
    client = make_app(app.namespace)
    caplog.set_level(logging.WARNING, "stackshift.client")
    run = await client.start("j")
    assert await run.result(timeout=10) == 1
    assert "no live worker consumes" not in caplog.text
    await client.start("j", queue_name="nobody")
    assert "queue 'nobody', which no live worker consumes" in caplog.text


@pytest.mark.parametrize(
    "url", ["redis://localhost:abc/0", "http://localhost:6379", "localhost:6379",
            "redis://localhost:6379/zero", ""],
)  # fmt: skip
def test_a_malformed_redis_url_is_rejected_at_once(url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="redis_url"):
        StackShift(url, namespace="x")
    app = StackShift(namespace="x")
    with pytest.raises(InvalidArgumentError, match="redis_url"):
        app.use_redis_url(url or "nope://")


async def test_unreachable_redis_raises_a_stackshift_error() -> None:
    app = StackShift(f"redis://127.0.0.1:{free_port()}/0", namespace="down")
    app.job("j", lambda ctx: None)
    try:
        calls = [app.start("j"), app.get_run("r"), app.state.get("k"), app.cancel("r"),
                 app.list_runs(), app.send_event("e", {})]  # fmt: skip
        for call in calls:
            with pytest.raises(RedisUnavailableError) as info:
                await call
            assert isinstance(info.value, StackShiftError)
            assert "Redis unavailable" in str(info.value)
    finally:
        await app.close()
