"""One error style and exit-code table for the whole CLI (`_ops/target.py`): 0 ok,
1 refused or not found, 2 usage, 3 Redis; every error one line `Error: ...` on stderr,
never a traceback. Also `stackshift-worker` with a malformed --redis-url, and `events
send` naming the runs an event started and cancelled."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import ROOT, WORKER_ENTRY

from stackshift_redis import CancelOn, RunContext, StackShift
from stackshift_redis._ops.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackshift_redis._ops.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("Error: "), done.stderr
    return done.stderr


def test_the_exit_code_table(redis_url: str, is_cluster: bool, namespace: str) -> None:
    base = ["--redis-url", redis_url, "--namespace", namespace, *(["--cluster"] * is_cluster)]
    ok = _run(*base, "workers")
    assert ok.returncode == 0, ok.stderr
    missing = _run(*base, "runs", "show", "0000000000000000deadbeef")
    assert missing.returncode == 1 and "no run 0000000000000000deadbeef" in _one_line(missing)
    usage = _run(*base, "runs", "list", "--status", "nope")
    assert usage.returncode == 2 and "nope" in _one_line(usage)
    down = _run("--redis-url", "redis://127.0.0.1:1/0", "workers")
    assert down.returncode == 3 and "cannot reach Redis" in _one_line(down)
    if not is_cluster:
        bad_db = _run("--redis-url", redis_url.rsplit("/", 1)[0] + "/999", "workers")
        assert bad_db.returncode == 3, bad_db.stderr
        assert "DB index is out of range" in _one_line(bad_db)
        assert "database number" in bad_db.stderr


@pytest.mark.parametrize("url", ["localhost:6379", "http://x"])
def test_the_worker_says_a_bad_redis_url_in_one_line(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", WORKER_ENTRY, "tests.apps.ops_jobs:app", "--redis-url", url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "--redis-url" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


async def test_events_send_names_started_and_cancelled_runs(
    app: StackShift, redis_url: str, is_cluster: bool
) -> None:
    async def ship(ctx: RunContext) -> Any:
        await ctx.step.sleep("later", 3600)

    app.job("ship", ship, queue="evq", cancel_on=CancelOn("order.cancelled", match="order_id"))
    run = await app.start("ship", {"order_id": "o_1"})
    await asyncio.sleep(0.05)
    base = ["--redis-url", redis_url, "--namespace", app.namespace, *(["--cluster"] * is_cluster)]
    args = [*base, "events", "send", "order.cancelled", "--data", '{"order_id": "o_1"}']
    done = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert done.exit_code == 0, done.output
    assert "resumed 0 run(s), started 0, cancelled 1" in done.output
    assert f"  cancelled {run.id}" in done.output


def _log(tmp_path: Any) -> Any:
    return open(tmp_path / "worker.log", "wb")


async def test_a_flushall_under_a_blocked_worker_is_one_warning(
    tmp_path: Any, procs: list[Any]
) -> None:
    import shutil

    from helpers import OwnRedis, own_app, spawn_worker, wait_for

    server = OwnRedis()
    server.start()
    log = _log(tmp_path)
    try:
        env = {"STACKSHIFT_TEST_CLUSTER": "0"}
        procs.append(spawn_worker(server.url, "flushed", log=log, env=env,
                                  target="tests.apps.ops_jobs:app"))  # fmt: skip
        app = own_app(server.url, "flushed")
        try:
            await wait_for(lambda: app.redis.zcard(app._core.keys.workers()), 20)
            await asyncio.sleep(0.5)  # blocked on its ticket streams
            await app.redis.flushall()
            await wait_for(lambda: app.redis.hget(app._core.keys.jobs(), "sign"), 20)
            run = await app.start("burst", {"fail": False})
            assert await run.result(timeout=20) == "ok"
        finally:
            await app.close()
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
        log.close()
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.count("lost this namespace's queues") == 1, text[-3000:]
