"""Job definitions in Redis, versions and patches with real worker processes (issue 24):
every caller gets the rules (the CLI, a process without the job, a schedule tick, an
invoke), in-flight runs keep their version across deploys, `ctx.patched` across a restart.
Workers run tests/apps/versioned_jobs.py."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner, Result
from helpers import observed, spawn_worker, wait_exit, wait_for

from stackshift_redis import StackShift
from stackshift_redis._client.queue_view import queue_gauges
from stackshift_redis._ops.cli import main
from stackshift_redis.dashboard import create_app

TARGET = "tests.apps.versioned_jobs:app"


def _worker(url: str, ns: str, log: Any = None, **env: str) -> Any:
    return spawn_worker(url, ns, "--queue", "defs", "--concurrency", "16", log=log,
                        env=env, target=TARGET)  # fmt: skip


def _log(path: Path) -> Any:
    return open(path, "wb")


async def _cli(url: str, ns: str, cluster: bool, *args: str) -> Result:
    base = ["--redis-url", url, "--namespace", ns, *(["--cluster"] * cluster)]
    return await asyncio.to_thread(CliRunner().invoke, main, [*base, *args])


async def _published(app: StackShift, job: str) -> bool:
    return bool(await app.redis.hget(app._core.keys.defs(), job))


async def _stop(proc: Any) -> None:
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 30) == 0


async def test_cli_and_a_process_without_the_job_honour_concurrency_and_cancel_on(
    make_app: Callable[..., StackShift], redis_url: str, is_cluster: bool, procs: list[Any]
) -> None:
    client = make_app()  # registers nothing: knows the job by name only
    ns = client.namespace
    procs.append(_worker(redis_url, ns))
    await wait_for(lambda: _published(client, "tenant-sync"), 20)
    data = json.dumps({"tenant": "t1", "settle": 30})
    sent = [await _cli(redis_url, ns, is_cluster, "events", "send", "tenant.signup",
                       "--data", data) for _ in range(2)]  # fmt: skip
    assert all(r.exit_code == 0 for r in sent), sent[0].output
    other = await client.send_event("tenant.signup", {"tenant": "t2", "settle": 30})
    runs = await client.list_runs(job="tenant-sync")
    assert len(runs) == 3
    for run in runs:  # every run got the job's rules: a group and a slot of its tenant
        h = await client.redis.hmget(
            client._core.keys_of(run.id).run(run.id), "group", "slots", "cxl"
        )
        assert all(h), h
    await wait_for(lambda: _all(client, runs, "waiting"), 20)
    assert await observed(client, "max:tenant:t1") == 1  # one of a tenant at a time
    cancel = await _cli(redis_url, ns, is_cluster, "events", "send", "tenant.deleted",
                        "--data", json.dumps({"tenant": "t1"}), "--json")  # fmt: skip
    assert cancel.exit_code == 0, cancel.output
    assert len(json.loads(cancel.stdout)["cancelled"]) == 2
    done = await client.send_event("tenant.deleted", {"tenant": "t2"})  # no decorator here
    assert done.cancelled == other.started


async def _all(app: StackShift, runs: list[Any], status: str) -> bool:
    infos = [await app.get_run(r.id) for r in runs]
    return all(i is not None and i.status == status for i in infos)


async def test_by_name_starts_honour_concurrency(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    procs.append(_worker(redis_url, client.namespace))
    await wait_for(lambda: _published(client, "sync-by-name"), 20)
    runs = [await client.start("sync-by-name", {"tenant": "t"}) for _ in range(8)]
    await asyncio.gather(*(r.result(timeout=30) for r in runs))
    assert await observed(client, "max:byname:t") == 2


async def test_a_schedule_tick_and_an_invoked_child_honour_their_rules(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    procs.append(_worker(redis_url, client.namespace))
    await wait_for(lambda: _published(client, "ticked"), 20)
    await client.schedules.create("every-second", job="ticked", every=1)
    await wait_for(lambda: client.list_runs(job="ticked", status="completed"), 20)
    (tick, *_) = await client.list_runs(job="ticked", status="completed")
    h = await client.redis.hmget(
        client._core.keys_of(tick.id).run(tick.id), "group", "slots", "priority"
    )
    assert h == [b"ticked/0:*", b'[["0:*",1]]', b"7"]
    parent = await client.start("parent")
    assert await parent.result(timeout=30) == [0, 1, 2]
    assert await observed(client, "max:child:x") == 1  # the child's keyed limit held
    for c in await client.list_runs(job="child"):
        assert (
            await client.redis.hget(client._core.keys_of(c.id).run(c.id), "group") == b"child/0:x"
        )


async def test_a_v1_run_finishes_on_v1_code_while_a_v2_run_starts_at_once(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    ns = client.namespace
    old = _worker(redis_url, ns, DEFS_VERSIONS="1")
    procs.append(old)
    await wait_for(lambda: _published(client, "deploy"), 20)
    # a nap that outlasts a worker's stop and the next one's start on a loaded machine
    first = await client.start("deploy", {"nap": 10})
    await wait_for(lambda: _all(client, [first], "waiting"), 20)
    await _stop(old)
    procs.append(_worker(redis_url, ns, DEFS_VERSIONS="1,2"))  # the deploy keeps v1's code
    await wait_for(lambda: _live_version(client, "deploy", 2), 20)
    second = await client.start("deploy", {"nap": 0})
    assert (await client.get_run(second.id)).version == 2  # type: ignore[union-attr]
    assert (await second.result(timeout=10))["code"] == 2  # while the v1 run still sleeps
    assert await first.status() == "waiting"
    assert await first.result(timeout=30) == {"code": 1, "pinned": 1, "begun_by": old.pid}


async def _live_version(app: StackShift, job: str, version: int) -> bool:
    score = await app.redis.zscore(app._core.keys.job_versions(job), str(version))
    return score is not None


async def test_a_run_pinned_to_an_unserved_version_waits_queued_then_runs(
    make_app: Callable[..., StackShift],
    redis_url: str,
    is_cluster: bool,
    procs: list[Any],
    tmp_path: Path,
) -> None:
    client = make_app()
    ns = client.namespace
    logs = [_log(tmp_path / f"w{i}.log") for i in range(2)]
    procs.append(_worker(redis_url, ns, logs[0], DEFS_VERSIONS="1"))
    await wait_for(lambda: _published(client, "deploy"), 20)
    run = await client.start("deploy", {"nap": 0}, version=3)

    async def held() -> bool:
        info = await client.get_run(run.id)
        return info is not None and info.unserved

    await wait_for(held, 20)
    info = await client.get_run(run.id)
    assert info is not None and (info.status, info.version) == ("queued", 3)
    shown = await _cli(redis_url, ns, is_cluster, "runs", "show", run.id)
    assert "no live worker serves this version" in shown.output
    report = json.loads((await _cli(redis_url, ns, is_cluster, "jobs", "--json")).stdout)
    deploy = next(j for j in report if j["job"] == "deploy")
    assert deploy["unserved"] == {"3": 1} and list(deploy["live"]) == ["1"]
    table = await _cli(redis_url, ns, is_cluster, "jobs")
    assert table.exit_code == 0 and "(1 unserved)" in table.output, table.output
    # the queue views count it apart from the ready runs: a second held run, then cancelled
    doomed = await client.start("deploy", {"nap": 0}, version=3)
    await wait_for(lambda: _queue_unserved(redis_url, ns, is_cluster, 2), 20)
    table = await _cli(redis_url, ns, is_cluster, "queues")
    assert "+2 unserved" in table.output, table.output
    _, gauges = await queue_gauges(client._core, ["defs"])  # the metrics' (every partition)
    assert [(g.ready, g.unserved) for g in gauges if g.queue == "defs"] == [(0, 2)]
    asgi = httpx.ASGITransport(app=create_app(client))
    async with httpx.AsyncClient(transport=asgi, base_url="http://t") as web:
        row = re.search(r'<tr data-queue="defs">.*?</tr>', (await web.get("/")).text, re.S)
    assert row is not None and "+2 unserved" in row.group(0)
    assert await client.cancel(doomed.id) is True
    assert await _queue_unserved(redis_url, ns, is_cluster, 1)
    await asyncio.sleep(1.5)
    assert await run.status() == "queued"  # not handed back and forth meanwhile
    procs.append(_worker(redis_url, ns, logs[1], DEFS_VERSIONS="1,2,3"))
    try:
        assert (await run.result(timeout=60))["code"] == 3
    finally:
        for f in logs:
            f.close()
        text = "".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
        info = await client.get_run(run.id)
        print(text[-4000:], info.timeline if info else None)  # shown when it fails
    assert info is not None
    bounced = sum(e["type"] == "handed_back" for e in info.timeline)
    assert bounced <= 3  # the v1 worker does not win it back again and again
    assert await _queue_unserved(redis_url, ns, is_cluster, 0)  # released: counted no more


async def _queue_unserved(url: str, ns: str, cluster: bool, n: int) -> bool:
    """Whether `stackshift queues --json` counts `n` unserved runs on queue defs."""
    out = json.loads((await _cli(url, ns, cluster, "queues", "--json")).stdout)
    return [q["unserved"] for q in out if q["name"] == "defs"] == [n]


async def test_patched_takes_the_old_branch_past_the_point_and_the_new_one_before_it(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = make_app()
    ns = client.namespace
    old = _worker(redis_url, ns)
    procs.append(old)
    await wait_for(lambda: _published(client, "patchy"), 20)
    past = await client.start("patchy", {"nap1": 0, "nap2": 4})  # passes the point first
    before = await client.start("patchy", {"nap1": 4, "nap2": 0})  # still before it

    async def at(run_id: str, step: str) -> bool:
        info = await client.get_run(run_id)
        return info is not None and info.status == "waiting" and step in info.steps

    await wait_for(lambda: at(past.id, "old"), 20)
    await wait_for(lambda: at(before.id, "begin"), 20)
    await _stop(old)
    procs.append(_worker(redis_url, ns, DEFS_PATCH="1"))  # the code with the patch
    assert await past.result(timeout=30) == "old"
    assert await before.result(timeout=30) == "new"
    for run, answer in ((past, False), (before, True)):
        info = await client.get_run(run.id)
        assert info is not None and info.steps["patched:p1"]["result"] is answer
    fresh = await client.start("patchy", {"nap1": 0, "nap2": 0})
    assert await fresh.result(timeout=30) == "new"
    synced = await client.start("patchy-sync")
    assert await synced.result(timeout=30) == [True, True]


async def test_rolling_deploy_every_run_finishes_on_its_own_version(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any], tmp_path: Path
) -> None:
    """Two workers switched one by one from v1 to v1+v2 code while 200 v1 runs sleep; runs
    started meanwhile are pinned to v2 once a v2 worker is live. Every run finishes on the
    code of its version, and the logs hold no ERROR storm."""
    client = make_app()
    ns = client.namespace
    logs = [_log(tmp_path / f"w{i}.log") for i in range(4)]
    workers = [_worker(redis_url, ns, logs[i], DEFS_VERSIONS="1") for i in range(2)]
    procs += workers
    await wait_for(lambda: _published(client, "deploy"), 20)
    v1_runs = await client.start_many("deploy", [{"nap": 3}] * 200)
    later = []
    for i in range(2):
        await _stop(workers[i])
        procs.append(_worker(redis_url, ns, logs[2 + i], DEFS_VERSIONS="1,2"))
        await wait_for(lambda: _live_version(client, "deploy", 2), 20)
        later += await client.start_many("deploy", [{"nap": 0.5}] * 10)
    results = await asyncio.gather(*(r.result(timeout=60) for r in [*v1_runs, *later]))
    assert [r["code"] for r in results] == [1] * 200 + [2] * 20
    assert all(r["code"] == r["pinned"] for r in results)
    for f in logs:
        f.close()
    text = "".join((tmp_path / f"w{i}.log").read_text() for i in range(4))
    assert text.count("ERROR") == 0, text[-3000:]
    assert text.count("handed back for a worker") <= 20  # at most one line per run
