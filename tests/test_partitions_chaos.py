"""Partitions under a worker's death (issue 28, chaos): a worker process SIGKILLed while a
child invoked on another partition runs. The child is recovered on its partition, its end
settles its parent through the outbox, and nothing is lost or applied twice (counted); and
Redis killed mid-run and started again from its AOF."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import Callable
from typing import Any

import pytest
from apps import obs_key
from helpers import OwnRedis, kill_all, skip_on_cluster, spawn_worker, wait_for

from stackshift_redis import StackShift
from stackshift_redis._core.partitions import PREVIEW_ENV, route
from stackshift_redis._core.routing import SEP

APP = "tests.apps.partition_jobs:app"


@pytest.fixture
def client(make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch) -> StackShift:
    monkeypatch.setenv(PREVIEW_ENV, "1")
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
    namespace: str, procs: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREVIEW_ENV, "1")
    server = OwnRedis(aof=True)
    server.start()
    app = StackShift(server.url, namespace=namespace, partitions=4)
    try:
        parents = []
        for i in range(30):
            key = f"c{i}"
            account = next(
                f"a{i}-{j}"
                for j in range(100)
                if route(f"sync_account{SEP}a{i}-{j}", 4) != route(key, 4)
            )
            handle = await app.start(
                "pay", {"account": account}, partition_key=key, queue_name="chaos"
            )
            parents.append((handle, account))
        procs.append(spawn_worker(server.url, namespace, "--queue", "chaos", target=APP))

        async def some_done() -> bool:
            done = 0
            for handle, _ in parents:
                info = await app.get_run(handle.id)
                done += info is not None and info.status == "completed"
            return done >= 3

        await wait_for(some_done, timeout=20)
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


async def _drained(app: StackShift) -> bool:
    async def empty() -> bool:
        return sum([await app.redis.xlen(k.outbox()) for k in app._core.part_keys]) == 0

    await wait_for(empty, timeout=10)
    return True
