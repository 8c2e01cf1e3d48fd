"""Run lifecycle with real worker processes: on_failure under a SIGKILL between the failed
attempt and the script that records it, and pause/resume with two workers."""

from __future__ import annotations

import asyncio
import signal
import subprocess

from apps import obs_key
from helpers import observed, spawn_worker, wait_for

from stackshift_redis import StackShift
from stackshift_redis._core.scripts import FailRequest, ScriptCall
from stackshift_redis.errors import LeaseLostError


async def _handler_runs(app: StackShift) -> list[str]:
    page = await app.list_runs(job="doomed_handler", limit=1000)  # every status at once
    return sorted(r.id for r in page)


async def test_on_failure_exactly_once_when_workers_are_killed_around_the_failure(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    run = await app.start("doomed", {"order": "o_9"}, queue_name="doomed")
    # 1: killed after the attempt failed, before the failure is recorded
    procs.append(spawn_worker(redis_url, app.namespace, "--queue", "doomed",
                              env={"STACKSHIFT_KILL_ON_FAIL": "1"}))  # fmt: skip
    await wait_for(lambda: procs[0].poll() is not None, 20)
    assert procs[0].returncode == -signal.SIGKILL
    assert await observed(app, "doomed") == 1
    assert await run.status() == "running" and await _handler_runs(app) == []
    # 2: recovers the run (lease expired), fails it for good; killed right after that
    procs.append(spawn_worker(redis_url, app.namespace, "--queue", "doomed"))
    await wait_for(lambda: _status_is(app, run.id, "failed"), 20)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait(10)
    assert await observed(app, "doomed") == 2
    [handler] = await _handler_runs(app)  # started by the same script as the failure
    info = await app.get_run(run.id)
    assert info is not None and info.timeline[-1]["on_failure_run"] == handler
    assert (await app.get_run(handler)).status == "queued"  # type: ignore[union-attr]
    # the failing script sent again (a lost reply): recognised as done, no second handler;
    # the first worker's attempt, sent late: fenced by its older lease token
    err = '{"type": "NonRetriableError", "message": "card declined", "traceback": ""}'

    # the lease token is the run's take count (RunInfo.executions)
    def fail(token: str) -> ScriptCall:
        request = FailRequest(
            run_id=run.id, token=token, error_json=err, outcome="failed", retention_ms=60_000
        )
        return app._core.scripts_of(run.id).fail_call(request)

    again, late = fail(str(info.executions)), fail(str(info.executions - 1))
    replies = await app._core.scripts_of(run.id).run_batch([again, late])
    assert replies[0] == b"failed" and isinstance(replies[1], LeaseLostError)
    assert await _handler_runs(app) == [handler]
    # 3: runs the handler, once
    procs.append(spawn_worker(redis_url, app.namespace, "--queue", "handlers"))
    await wait_for(lambda: _status_is(app, handler, "completed"), 20)
    handled = await app.redis.lrange(obs_key(app.namespace, "handled"), 0, -1)
    assert handled == [run.id.encode()]
    assert await _handler_runs(app) == [handler]
    h = await app.get_run(handler)
    assert h is not None and h.payload == {
        "run_id": run.id, "job": "doomed", "payload": {"order": "o_9"},
        "error": {"type": "NonRetriableError", "message": "card declined"},
    }  # fmt: skip


async def _status_is(app: StackShift, run_id: str, status: str) -> bool:
    info = await app.get_run(run_id)
    return info is not None and info.status == status


async def test_pause_and_resume_with_two_worker_processes(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    q = "ordered"
    for _ in range(2):
        procs.append(spawn_worker(redis_url, app.namespace, "--queue", q, "--concurrency", "2"))
    long = await app.start("ordered", {"i": -1, "s": 1.5}, queue_name=q)
    await wait_for(lambda: _status_is(app, long.id, "running"), 20)
    assert await app.pause_queue(q) is True
    assert await app.pause_queue(q) is False  # paused already
    # one partition key: a queue is taken in order within a partition (with partitions)
    pk = "ordered"
    runs = [
        await app.start("ordered", {"i": i, "s": 0.2}, queue_name=q, partition_key=pk)
        for i in range(20)
    ]
    delayed = await app.start("ordered", {"i": 99}, queue_name=q, partition_key=pk, delay=0.2)
    # the running run finishes (1.5 s, later on a loaded machine); nothing else is claimed
    await wait_for(lambda: _status_is(app, long.id, "completed"), 20)
    await wait_for(lambda: _status_is(app, delayed.id, "queued"), 20)  # due: ready, held
    await asyncio.sleep(0.5)  # the freed slots would have claimed a run by now
    assert {await r.status() for r in runs} == {"queued"}
    assert await delayed.status() == "queued"  # waiting for the resume
    assert await app.redis.lrange(obs_key(app.namespace, "order"), 0, -1) == [b"-1"]
    assert await app.redis.hexists(app._core.keys.queue_conf(q), "paused")

    assert await app.resume_queue(q) is True
    assert await app.resume_queue(q) is False
    await wait_for(lambda: _all_done(app, 22), 20)
    infos = [await app.get_run(r.id) for r in [*runs, delayed]]
    started = [i.started_at for i in infos if i is not None]
    assert len(started) == 21 and started == sorted(started)  # taken in order
    pids = await app.redis.lrange(obs_key(app.namespace, "order_pids"), 0, -1)
    assert len(set(pids)) == 2  # both processes took part


async def _all_done(app: StackShift, n: int) -> bool:
    return await observed(app, "ordered_done") == n
