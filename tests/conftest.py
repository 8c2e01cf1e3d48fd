"""Test fixtures: a real redis-server per session (or $STACKSHIFT_TEST_REDIS_URL), fakeredis,
and a factory of apps with a unique namespace per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis as syncredis

from stackshift_redis import StackShift


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(args: list[str]) -> tuple[subprocess.Popen[bytes], int, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.exit("redis-server not found: install it (apt-get install redis-server)", 2)
    port = _free_port()
    workdir = tempfile.mkdtemp(prefix="ss-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = syncredis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except syncredis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.exit(f"redis-server did not start on port {port}", 2)
    return proc, port, workdir


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: $STACKSHIFT_TEST_REDIS_URL, or a redis-server we start."""
    given = os.environ.get("STACKSHIFT_TEST_REDIS_URL")
    if given:
        yield given
        return
    proc, port, workdir = _start_redis([])
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_app(redis_url: str) -> AsyncIterator[Callable[..., StackShift]]:
    """Factory: StackShift apps on the real Redis, each in a fresh namespace by default."""
    apps: list[StackShift] = []

    def factory(namespace: str | None = None, **kwargs: Any) -> StackShift:
        app = StackShift(redis_url, namespace=namespace or f"t{uuid.uuid4().hex[:12]}", **kwargs)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        await app.close()


@pytest.fixture
async def app(make_app: Callable[..., StackShift]) -> StackShift:
    """One app on the real Redis in a fresh namespace."""
    return make_app()


@pytest.fixture
async def fake_app() -> AsyncIterator[StackShift]:
    """An app on fakeredis (Lua via lupa), for fast unit tests."""
    from stackshift_redis.testing import fake_redis

    app = StackShift(redis=fake_redis(), namespace=f"f{uuid.uuid4().hex[:8]}")
    yield app
    await app.close()


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll an async or sync predicate until truthy (tests only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def running_worker() -> AsyncIterator[Callable[..., Any]]:
    """Factory: start `app.worker(...)` in a task; stopped at teardown."""
    started: list[tuple[Any, asyncio.Task[None]]] = []

    def factory(app: StackShift, **kwargs: Any) -> Any:
        kwargs.setdefault("poll_interval", 0.05)
        kwargs.setdefault("block_ms", 200)
        worker = app.worker(**kwargs)
        started.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield factory
    for worker, task in started:
        await asyncio.wait_for(worker.stop(force=True), 15)
        await asyncio.wait_for(task, 5)
