"""Day-two failures with real worker processes: Redis restarted empty, Redis not there yet,
queue settings of several deploys, startup hooks (issue 11, items 1, 3, 10, 18)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import OwnRedis, RedisServer, own_app, spawn_worker, wait_exit, wait_for

from stackshift_redis import StackShift

TARGET = "tests.apps.deploy_jobs:app"
STANDALONE = {"DAYTWO_STANDALONE": "1"}


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


def _log(tmp_path: Path, name: str) -> Any:
    return open(tmp_path / name, "wb")


async def test_worker_recovers_after_redis_restarts_empty(
    own_redis: OwnRedis, namespace: str, procs: list[Any], tmp_path: Path
) -> None:
    own_redis.start()
    log = _log(tmp_path, "worker.log")
    procs.append(spawn_worker(own_redis.url, namespace, "-q", "life", log=log, env=STANDALONE,
                              target=TARGET))  # fmt: skip
    app = own_app(own_redis.url, namespace)
    try:
        run = await app.start("echo", 1, queue_name="life")
        assert await run.result(timeout=20) == 1
        own_redis.stop()  # restart without persistence: every key is gone
        await asyncio.sleep(1.0)
        own_redis.start()
        await app.close()
        app = own_app(own_redis.url, namespace)
        # the worker re-publishes its job map by itself: a start by name works again
        await wait_for(lambda: app.redis.hget(app._core.keys.jobs(), "echo"), 15)
        started = time.monotonic()
        run = await app.start("echo", 2)
        assert await run.result(timeout=15) == 2
        assert time.monotonic() - started < 10
        assert await app.redis.hget(app._core.keys.jobs(), "pooled") == b"life"
    finally:
        await app.close()
    log.close()
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    # at most one line: the client's own retries may ride out a short restart unseen
    assert text.count("cannot reach Redis at redis://127.0.0.1:") <= 1, text[-3000:]
    assert text.count("lost this namespace's queues") == 1, text[-3000:]


async def test_worker_started_before_redis_waits_for_it(
    own_redis: OwnRedis, namespace: str, procs: list[Any], tmp_path: Path
) -> None:
    log = _log(tmp_path, "worker.log")
    procs.append(spawn_worker(own_redis.url, namespace, "-q", "life", log=log, env=STANDALONE,
                              target=TARGET))  # fmt: skip
    # the worker (slow to import on a loaded machine) reports it once, then backs off, alive
    await wait_for(lambda: "cannot reach Redis" in (tmp_path / "worker.log").read_text(), 30)
    await asyncio.sleep(1.0)
    assert procs[0].poll() is None
    own_redis.start()
    app = own_app(own_redis.url, namespace)
    try:
        run = await app.start("echo", "late", queue_name="life")
        assert await run.result(timeout=20) == "late"
    finally:
        await app.close()
    log.close()
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    lines = [ln for ln in text.splitlines() if "cannot reach Redis" in ln]
    assert len(lines) == 1 and own_redis.url in lines[0] and "onnect" in lines[0], text


async def test_a_worker_without_the_setting_keeps_the_queue_limit(
    make_app: Callable[..., StackShift], redis_server: RedisServer, procs: list[Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    app = make_app()
    url = redis_server.url
    limited = spawn_worker(url, app.namespace, "-q", "heavy", "-c", "8",
                           env={"DAYTWO_LIMIT": "2"}, target=TARGET)  # fmt: skip
    procs.append(limited)
    conf = app._core.keys.queue_conf("heavy")
    await wait_for(lambda: app.redis.hget(conf, "concurrency"), 20)
    log = _log(tmp_path, "plain.log")
    procs.append(spawn_worker(url, app.namespace, "-q", "heavy", "-c", "8", log=log,
                              target=TARGET))  # fmt: skip
    await wait_for(lambda: _workers(app, 2), 20)
    runs = await app.start_many("hold", list(range(8)))
    assert sorted([await r.result(timeout=30) for r in runs]) == list(range(8))
    assert await app.redis.hget(conf, "concurrency") == b"2"
    assert int(await app.redis.get(f"obs:{{{app.namespace}}}:max") or 0) == 2
    log.close()


async def _workers(app: StackShift, n: int) -> bool:
    return int(await app.redis.zcard(app._core.keys.workers())) >= n


async def test_startup_hook_resources_reach_handlers_and_shutdown_runs(
    app: StackShift, redis_server: RedisServer, procs: list[Any], is_cluster: bool
) -> None:
    proc = spawn_worker(redis_server.url, app.namespace, "-q", "life", target=TARGET)
    procs.append(proc)
    run = await app.start("pooled", queue_name="life")
    pool = await run.result(timeout=20)
    assert pool == f"pool-{proc.pid}"
    proc.terminate()
    assert await wait_exit(proc, 20) == 0
    if not is_cluster:  # the hook records through a plain client (standalone only)
        assert await app.redis.get(f"obs:{{{app.namespace}}}:shutdown") == pool.encode()


async def test_a_failing_startup_hook_stops_the_worker_before_it_claims(
    app: StackShift, redis_server: RedisServer, procs: list[Any], tmp_path: Path
) -> None:
    run = await app.start("echo", 1, queue_name="life")
    log = _log(tmp_path, "worker.log")
    proc = spawn_worker(redis_server.url, app.namespace, "-q", "life", log=log, target=TARGET,
                        env={"DAYTWO_FAIL_STARTUP": "1"})  # fmt: skip
    procs.append(proc)
    code = await wait_exit(proc, 30)
    log.close()
    text = (tmp_path / "worker.log").read_text()
    assert code not in (0, None), text
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if "startup hook" in ln]
    assert len(errors) == 1 and "RuntimeError: database unreachable" in errors[0], text
    assert await run.status() == "queued"
