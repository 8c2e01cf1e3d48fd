"""The synchronous facade, as a WSGI app or script uses it (no event loop in the caller)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import RedisServer

from stackshift_redis import RunContext, RunFailed, StackShift


def _jobs(app: StackShift) -> None:
    app.job("add", lambda ctx: ctx.payload["a"] + ctx.payload["b"], queue="sync-q")

    @app.job("waits", queue="sync-q")
    async def waits(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event("w", event="go", match={"id": ctx.payload})
        return evt.data["v"] if evt else None

    def boom(ctx: RunContext) -> None:
        raise RuntimeError("sync boom")

    app.job("boom", boom, queue="sync-q", retries=0)


@pytest.fixture
def apps(redis_server: RedisServer) -> Iterator[tuple[StackShift, StackShift]]:
    ns = f"s{uuid.uuid4().hex[:10]}"
    client, server = redis_server.app(ns), redis_server.app(ns)
    _jobs(client)
    _jobs(server)
    worker = server.worker(concurrency=4, poll_interval=0.05, block_ms=100)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(worker.run(),))
    thread.start()
    yield client, server
    loop.call_soon_threadsafe(worker.request_stop, True)
    thread.join(15)
    assert not thread.is_alive()
    loop.run_until_complete(redis_server.close_app(server))
    loop.close()
    client.sync.close()


def test_sync_start_result_and_inspect(apps: tuple[StackShift, StackShift]) -> None:
    client, _ = apps
    run = client.sync.start("add", {"a": 2, "b": 3}, idempotency_key="k1")
    assert client.sync.start("add", {"a": 9, "b": 9}, idempotency_key="k1").id == run.id
    assert run.result(timeout=10) == 5
    info = client.sync.get_run(run.id)
    assert info is not None and info.status == "completed"
    assert [r.id for r in client.sync.list_runs(status="completed", job="add")] == [run.id]
    many = client.sync.start_many("add", [{"a": i, "b": 0} for i in range(5)])
    assert [h.result(timeout=10) for h in many] == list(range(5))


def test_sync_failure_events_cancel_and_state(apps: tuple[StackShift, StackShift]) -> None:
    client, _ = apps
    with pytest.raises(RunFailed, match="sync boom"):
        client.sync.start("boom").result(timeout=10)
    waiting = client.sync.start("waits", "x1")
    for _ in range(100):
        if waiting.status() == "waiting":
            break
        threading.Event().wait(0.05)
    sent = client.sync.send_event("go", {"id": "x1", "v": 42})
    assert sent.resumed == [waiting.id]
    assert waiting.result(timeout=10) == 42
    later = client.sync.start("add", {"a": 1, "b": 1}, delay=60)
    assert client.sync.cancel(later.id) is True and later.status() == "cancelled"
    client.sync.state.set("progress", 0.5, ttl=60)
    assert client.sync.state.get("progress") == 0.5
    assert client.sync.state.incr("n") == 1
    with client.sync.state.lock("l", ttl=5, wait=1):
        assert client.sync.state.mark("once", ttl=60) is True
    assert client.sync.state.mark("once", ttl=60) is False


def test_sync_bulk_control_replay_and_pause(apps: tuple[StackShift, StackShift]) -> None:
    client, _ = apps
    assert client.sync.pause_queue("sync-q") is True
    runs = client.sync.start_many("add", [{"a": i, "b": 1} for i in range(4)])
    threading.Event().wait(0.3)
    assert {r.status() for r in runs} == {"queued"}  # paused: nothing claimed
    assert client.sync.cancel_runs(job="add", status="queued") == 4
    assert client.sync.retry_runs(job="add", status="cancelled") == 4
    assert client.sync.resume_queue("sync-q") is True
    assert [r.result(timeout=10) for r in runs] == [1, 2, 3, 4]
    again = client.sync.replay(runs[0].id)
    assert again.result(timeout=10) == 1
    info = client.sync.get_run(again.id)
    assert info is not None and info.replay_of == runs[0].id


def test_every_client_coroutine_has_a_sync_twin_with_the_same_parameters() -> None:
    from stackshift_redis._client.client import Client
    from stackshift_redis._client.sync import SyncStackShift

    coroutines = inspect.getmembers(Client, inspect.iscoroutinefunction)
    names = [name for name, _ in coroutines if not name.startswith("_")]
    assert "start" in names and "send_event" in names
    for name in names:
        twin = getattr(SyncStackShift, name, None)
        assert callable(twin), f"Client.{name} has no twin on the sync facade"
        assert not inspect.iscoroutinefunction(twin), f"SyncStackShift.{name} is a coroutine"
        mine = inspect.signature(getattr(Client, name)).parameters
        assert inspect.signature(twin).parameters == mine, f"SyncStackShift.{name} differs"
