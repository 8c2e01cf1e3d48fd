"""Partitions under a worker's death (issue 28, chaos): a worker process SIGKILLed while a
child invoked on another partition runs. The child is recovered on its partition, its end
settles its parent through the outbox, and nothing is lost or applied twice (counted); and
Redis killed mid-run and started again from its AOF: a standalone server, or one master of
a 3-master cluster (the one holding the most partitions) while the others keep serving."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from apps import obs_key
from helpers import (
    OwnCluster,
    OwnRedis,
    kill_all,
    only_on_cluster,
    skip_on_cluster,
    spawn_worker,
    wait_for,
)
from redis.exceptions import ClusterDownError

from stackshift_redis import RunContext, StackShift
from stackshift_redis._core.partitions import route
from stackshift_redis._core.routing import SEP

APP = "tests.apps.partition_jobs:app"


@pytest.fixture
def client(make_app: Callable[..., StackShift]) -> StackShift:
    return make_app(partitions=4)


async def test_a_worker_killed_mid_invoke_across_partitions_loses_nothing(
    client: StackShift, redis_url: str, procs: list[Any]
) -> None:
    ns = client._core
    parents = []
    for i in range(6):
        key = f"customer:{i}"
        here = route(key, 4)
        account = next(  # a child key that routes the child off its parent's partition
            f"acct{i}-{j}" for j in range(100) if route(f"sync_account{SEP}acct{i}-{j}", 4) != here
        )
        payload = {"account": account, "hang": i == 0}
        handle = await client.start("pay", payload, partition_key=key, queue_name="chaos")
        parents.append((handle, account))
    procs.append(spawn_worker(redis_url, client.namespace, "--queue", "chaos", target=APP))

    async def hang_pid() -> int:
        raw = await client.redis.get(obs_key(client.namespace, "hang_pid"))
        return int(raw) if raw else 0

    await wait_for(hang_pid, timeout=20)
    os.kill(await hang_pid(), signal.SIGKILL)  # mid-step of a child on another partition
    procs.append(spawn_worker(redis_url, client.namespace, "--queue", "chaos", target=APP))

    for handle, account in parents:
        assert await handle.result(timeout=30) == f"applied {account}"
    for handle, account in parents:
        assert await client.state.get(f"recorded:{account}") == 1  # committed once
        applied = await client.redis.get(obs_key(client.namespace, f"apply:{account}"))
        # a plain step is at-least-once: the hanging one ran again; any other step the
        # kill interrupted too
        assert applied == b"2" if account == parents[0][1] else applied in (b"1", b"2")
        info = await client.get_run(handle.id)
        assert info is not None and info.status == "completed"
        kid = next(e["child"] for e in info.timeline if e["type"] == "child_started")
        assert ns.part_of(kid) != ns.part_of(handle.id)
        settled = [e for e in info.timeline if e["type"] == "child_completed"]
        assert len(settled) == 1  # the parent was settled once

    async def outboxes_empty() -> bool:
        lengths = [await client.redis.xlen(k.outbox()) for k in ns.part_keys]
        return sum(lengths) == 0

    await wait_for(outboxes_empty, timeout=10)


@skip_on_cluster  # one server restarted in place (it holds every partition)
async def test_runs_across_partitions_survive_a_redis_restart_from_its_aof(
    namespace: str, procs: list[Any]
) -> None:
    server = OwnRedis(aof=True)
    server.start()
    app = StackShift(server.url, namespace=namespace, partitions=4)
    try:
        parents = await _start_pays(app, 30)
        procs.append(spawn_worker(server.url, namespace, "--queue", "chaos", target=APP))
        await wait_for(lambda: _completed(app, parents, 3), timeout=20)
        server.stop()  # SIGKILL mid-run: the AOF (appendfsync always) holds every write
        await asyncio.sleep(1.0)
        server.start()
        for handle, account in parents:
            assert await handle.result(timeout=40) == f"applied {account}"
            assert await app.state.get(f"recorded:{account}") == 1
        lengths = [await app.redis.xlen(k.outbox()) for k in app._core.part_keys]
        assert await _drained(app), lengths
    finally:
        kill_all(procs)
        await app.close()
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@only_on_cluster  # a cluster of its own: one master restarted in place
async def test_runs_across_partitions_survive_a_cluster_master_restart_from_its_aof(
    namespace: str, procs: list[Any], tmp_path: Path
) -> None:
    cluster = OwnCluster(aof=True, node_timeout_ms=5000)  # the outage below is ~1 s
    cluster.start()
    client = cluster.client()
    app = StackShift(redis=client, namespace=namespace, partitions=4)
    log_path = tmp_path / "worker.log"
    try:
        parents = await _start_pays(app, 30)
        ns = app._core
        ports = [client.get_node_from_key(k.prefix).port for k in ns.part_keys]
        victim = cluster.nodes[cluster.index_of(max(ports, key=ports.count))]
        with log_path.open("wb") as log:
            procs.append(
                spawn_worker(cluster.url, namespace, "--queue", "chaos", target=APP, log=log)
            )
        await wait_for(lambda: _completed(app, parents, 3), timeout=20)
        done_before = await _completed(app, parents, 0)
        victim.stop()  # SIGKILL mid-run: its AOF (appendfsync always) holds every write
        await asyncio.sleep(1.0)  # the outage: well within the node timeout
        victim.start()  # same port and dir: nodes.conf keeps its node id and slots
        began = time.monotonic()
        await wait_for(cluster.healthy, timeout=20)
        healthy_after = time.monotonic() - began
        for handle, account in parents:
            assert await handle.result(timeout=40) == f"applied {account}"
        recorded, started, settled = [], [], []  # per parent: counted, not summed
        for handle, account in parents:
            recorded.append(await app.state.get(f"recorded:{account}"))
            info = await app.get_run(handle.id)
            assert info is not None and info.status == "completed"
            kids = [e["child"] for e in info.timeline if e["type"] == "child_started"]
            assert all(ns.part_of(kid) != ns.part_of(handle.id) for kid in kids)
            started.append(len(kids))
            settled.append(len([e for e in info.timeline if e["type"] == "child_completed"]))
        assert recorded == [1] * 30  # each child's transactional step committed once
        assert started == settled == [1] * 30  # one child each, each parent settled once
        assert await _drained(app)
        assert procs[0].poll() is None  # the worker lived through the restart
        held = ports.count(victim.port)
        print(f"master held {held}/4 partitions; {done_before}/30 done before the kill; ")
        print(f"cluster_state:ok {healthy_after:.1f}s after its start")
    finally:
        kill_all(procs)
        await app.close()
        await client.aclose()
        cluster.stop()
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-4000:]  # a line per outage, no storm
    assert "is dropped" not in text, text[-4000:]  # every outbox entry applied
    assert text.count("cannot reach Redis") <= 1, text[-4000:]  # once per outage


async def test_a_cluster_down_for_a_while_is_one_line_and_the_worker_goes_on(
    app: StackShift,
    running_worker: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CLUSTERDOWN (a restarted master answers so for 2 s) is an outage: the worker says so
    once and backs off, as for a refused connection, not a traceback per loop turn."""

    @app.job("echo")
    async def echo(ctx: RunContext) -> Any:
        return ctx.payload

    caplog.set_level(logging.INFO, "stackshift.worker")
    running_worker(app)
    assert await (await app.start("echo", 1)).result(timeout=10) == 1

    async def cluster_down(*args: Any, **kwargs: Any) -> Any:
        raise ClusterDownError("The cluster is down")

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    with monkeypatch.context() as m:
        m.setattr(app.redis, "evalsha", cluster_down)  # every script call of the worker
        await wait_for(lambda: said("cannot reach Redis"), timeout=10)
        await asyncio.sleep(1.5)  # down for several turns of its loops (backoff from 0.5 s)
    assert await (await app.start("echo", 2)).result(timeout=15) == 2
    await wait_for(lambda: said("is reachable again"), timeout=10)
    assert said("cannot reach Redis") == 1 and "cluster is down" in caplog.text
    assert not [r for r in caplog.records if r.exc_info], caplog.text  # no traceback


async def _start_pays(app: StackShift, n: int) -> list[tuple[Any, str]]:
    """Start `n` parents whose child is routed (by its account) off the parent's partition."""
    parents = []
    for i in range(n):
        key = f"c{i}"
        account = next(
            f"a{i}-{j}"
            for j in range(100)
            if route(f"sync_account{SEP}a{i}-{j}", 4) != route(key, 4)
        )
        handle = await app.start("pay", {"account": account}, partition_key=key, queue_name="chaos")
        parents.append((handle, account))
    return parents


async def _completed(app: StackShift, parents: list[tuple[Any, str]], at_least: int) -> int:
    """How many parents completed when at least `at_least` did, else 0."""
    done = 0
    for handle, _ in parents:
        info = await app.get_run(handle.id)
        done += info is not None and info.status == "completed"
    return done if done >= at_least else 0


async def _drained(app: StackShift) -> bool:
    async def empty() -> bool:
        return sum([await app.redis.xlen(k.outbox()) for k in app._core.part_keys]) == 0

    await wait_for(empty, timeout=10)
    return True
