"""Storage-layout upgrades with real worker processes on real Redis (issue 29): two new
workers started at once on an old layout (the migration runs once and no run is touched
before it is done), the migrating process SIGKILLed halfway (the next one finishes it;
nothing converted twice), a newer layout refused with one line and nothing written, a
rolling deploy between two layout-aware releases (the older one stops before anything is
converted), and release 6707af1's own worker on a migrated namespace (a rollback: it does
not know layouts and cannot be stopped; new workers see it and sweep).

The slow, counting migration step is test-only: tests/apps/layout_jobs.py installs it in
the worker processes from the environment (see its docstring)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from apps import obs_key
from helpers import ROOT, TEST_PARTITIONS, spawn_worker, wait_exit, wait_for
from upgrade.loader import dump_namespace

from stackshift_redis import RunHandle, StackShift
from stackshift_redis._core import layout, migrations
from stackshift_redis.errors import LayoutError

APP = "tests.apps.layout_jobs:app"
L = layout.LAYOUT
LP = layout.layout_for(TEST_PARTITIONS)  # the layout of this suite's apps
STEP = f"mig:test-step-{L}"


def obs(app: StackShift, name: str) -> str:
    return obs_key(app.namespace, name)


async def meta(app: StackShift) -> dict[str, str]:
    raw = await app.redis.hgetall(app._core.keys.meta())
    return {f.decode(): v.decode() for f, v in raw.items()}


async def old_namespace(app: StackShift, runs: int, items: int) -> list[RunHandle]:
    """Runs of job `mark` queued in the app's namespace, left as release 6707af1 leaves a
    namespace (no meta hash), and `items` for the test step to convert."""
    handles = [await app.start("mark", {"i": i}, queue_name="lay") for i in range(runs)]
    await app.redis.delete(app._core.keys.meta())
    await app.redis.zadd(obs(app, "items"), {f"i{i:04d}": 0 for i in range(items)})
    return handles


async def counts(app: StackShift, name: str) -> dict[str, int]:
    raw = await app.redis.hgetall(obs(app, name))
    return {k.decode(): int(v) for k, v in raw.items()}


async def num(app: StackShift, name: str) -> int:
    return int(await app.redis.get(obs(app, name)) or 0)


async def all_completed(app: StackShift, handles: list[RunHandle]) -> bool:
    return all([await h.status() == "completed" for h in handles])


def spawn(redis_url: str, app: StackShift, log: Path, **env: str) -> subprocess.Popen[bytes]:
    return spawn_worker(redis_url, app.namespace, "--queue", "lay", "--grace", "5",
                        log=log.open("wb"), env=env, target=APP)  # fmt: skip


def ms(info: Any, field: str) -> int:
    return int(getattr(info, field).timestamp() * 1000)


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
@pytest.mark.timeout(90)
async def test_two_new_workers_at_once_migrate_once_and_touch_no_run_before_it_is_done(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    handles = await old_namespace(app, runs=6, items=12)
    env = {"LAYOUT_STEP": "1", "LAYOUT_STEP_DELAY": "0.4", "LAYOUT_RUNS": "6"}
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs += [spawn(redis_url, app, log, **env) for log in logs]  # the same moment
    await wait_for(lambda: all_completed(app, handles), 60)
    m = await meta(app)
    assert m["layout"] == str(layout.LAYOUT) and m[STEP] == "done" and "next" not in m
    assert await num(app, "calls") == 7  # 12 items, 2 per call, and the empty last call
    assert len(await app.redis.smembers(obs(app, "pids"))) == 1  # one process migrated
    assert await counts(app, "applied") == {f"i{i:04d}": 1 for i in range(12)}
    assert await counts(app, "tries") == {f"i{i:04d}": 1 for i in range(12)}
    assert not await app.redis.exists(obs(app, "touched"))  # no run taken during a call
    assert await num(app, "last_ms") <= int(m["migrated_at"])
    for h in handles:  # and none before the migration ended
        info = await app.get_run(h.id)
        assert info is not None and ms(info, "started_at") >= int(m["migrated_at"])
    texts = [log.read_text() for log in logs]
    steps = len(migrations.steps_after(1)) + 1  # the library's and the test step
    migrated = [t for t in texts if f"migrating the storage layout 1 -> {L} ({steps} steps)" in t]
    assert len(migrated) == 1
    assert f"migration step test-step-{L} (test items): 12 converted, 7 batches" in migrated[0]
    assert f"storage layout 1 -> {L} migrated in" in migrated[0]
    assert sum(f"another process is migrating the storage layout 1 -> {L}" in t for t in texts) == 1
    assert not any("Traceback" in t for t in texts)


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
@pytest.mark.timeout(90)
async def test_sigkill_of_the_migrating_process_halfway_the_next_one_finishes_it(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    handles = await old_namespace(app, runs=3, items=20)
    env = {"LAYOUT_STEP": "1", "LAYOUT_STEP_DELAY": "0.1", "LAYOUT_LOCK_MS": "5000"}
    # the 4th call converts i0006, i0007 and hangs before its cursor is saved
    procs.append(spawn(redis_url, app, tmp_path / "first.log", LAYOUT_STEP_HANG_AT="4", **env))
    await wait_for(lambda: _tried(app, "i0007"), 30)
    procs[0].send_signal(signal.SIGKILL)
    assert await wait_exit(procs[0], 10) == -signal.SIGKILL
    m = await meta(app)
    assert "layout" not in m and m["next"] == str(layout.LAYOUT)  # halfway: no layout yet
    assert m[STEP] == "i0005"  # the last saved cursor: i0006, i0007 are converted past it
    assert await app.redis.pttl(app._core.keys.migrating()) > 0  # its lock, until its TTL
    assert all([await h.status() == "queued" for h in handles])
    second = tmp_path / "second.log"
    procs.append(spawn(redis_url, app, second, **env))
    await wait_for(lambda: all_completed(app, handles), 60)
    m = await meta(app)
    assert m["layout"] == str(layout.LAYOUT) and m[STEP] == "done" and "next" not in m
    applied, tries = await counts(app, "applied"), await counts(app, "tries")
    assert applied == {f"i{i:04d}": 1 for i in range(20)}  # nothing lost or converted twice
    assert {k for k, n in tries.items() if n > 1} == {"i0006", "i0007"}  # the cut batch ran
    assert sum(tries.values()) == 22  # again, and nothing else did
    assert await num(app, "calls") == 11 + 1
    assert len(await app.redis.smembers(obs(app, "pids"))) == 2
    text = second.read_text()
    assert "another process is migrating" in text  # the dead one's lock, until its TTL
    assert f"migration step test-step-{L} resumes at cursor 'i0005'" in text
    assert f"migration step test-step-{L} (test items): 12 converted, 8 batches" in text


@pytest.mark.timeout(60)
async def test_a_newer_layout_is_refused_with_one_line_and_nothing_is_written(
    app: StackShift, make_app: Any, redis_url: str, procs: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:  # fmt: skip
    run = await app.start("mark", {"i": 1}, queue_name="lay")
    await app.redis.hset(app._core.keys.meta(), "layout", LP + 1)
    before = await _dump(app)
    log = tmp_path / "w.log"
    procs.append(spawn(redis_url, app, log))
    assert await wait_exit(procs[0], 30) == 1
    lines = log.read_text().splitlines()
    assert [ln for ln in lines if "layout" in ln] == [
        f"Error: namespace {app.namespace!r} has storage layout {LP + 1}, written "
        f"by a newer stackshift-redis than this one (layout {LP}): this process "
        "does not write to it; run the newer release (see the Deploying guide, 'Upgrades "
        "and rollbacks')"
    ]
    assert "Traceback" not in log.read_text()
    client = make_app(app.namespace)
    with pytest.raises(LayoutError):
        await client.start("mark", {}, queue_name="lay")
    assert await _dump(app) == before
    assert await run.status() == "queued"


@pytest.mark.timeout(60)
async def test_a_running_worker_meeting_a_newer_layout_exits_non_zero_with_one_line(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "w.log"
    procs.append(spawn(redis_url, app, log, LAYOUT_RECHECK_S="0.5"))
    run = await app.start("mark", {"i": 1}, queue_name="lay")
    assert await run.result(timeout=20) == {"i": 1}
    await app.redis.hset(app._core.keys.meta(), "layout", LP + 1)
    assert await wait_exit(procs[0], 15) == 1
    text = log.read_text()
    assert [ln for ln in text.splitlines() if "layout" in ln] == [
        ln for ln in text.splitlines() if ln.startswith("Error: namespace")
    ]
    assert "Traceback" not in text and f"has storage layout {LP + 1}" in text


@pytest.mark.timeout(90)
async def test_rolling_deploy_the_older_release_stops_before_the_newer_one_converts(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Release N (layout LP, this code) runs a worker and a client; release N+1 (layout LP+1:
    this code with LAYOUT=LP+1 and a test step) starts. It announces the migration, waits
    until N's processes have re-checked, and converts only once they stopped writing."""
    monkeypatch.setattr(layout, "RECHECK_S", 1.0)  # this test process: a client of N
    timing = {"LAYOUT_RECHECK_S": "1", "LAYOUT_DRAIN_MARGIN_S": "0.5"}
    old_log, new_log = tmp_path / "n.log", tmp_path / "n1.log"
    procs.append(spawn(redis_url, app, old_log, **timing))
    handles = [await app.start("mark", {"i": 0}, queue_name="lay")]
    assert await handles[0].result(timeout=20) == {"i": 0}
    await app.redis.zadd(obs(app, "items"), {f"i{i:04d}": 0 for i in range(4)})
    procs.append(spawn(redis_url, app, new_log, LAYOUT_TARGET=str(LP + 1),
                       LAYOUT_STEP="1", **timing))  # fmt: skip
    refused: LayoutError | None = None
    while refused is None:  # the client of N starts runs until it is refused
        try:
            handles.append(await app.start("mark", {"i": len(handles)}, queue_name="lay"))
        except LayoutError as exc:
            refused = exc
        await asyncio.sleep(0.05)
    assert f"is being migrated to storage layout {LP + 1}" in str(refused)
    assert await wait_exit(procs[0], 20) == 1  # N's worker: one line, exit 1
    assert f"is being migrated to storage layout {LP + 1}" in old_log.read_text()
    await wait_for(lambda: _layout_is(app, LP + 1), 30)
    await wait_for(lambda: all_completed(app, handles), 30)  # N+1 runs what N left
    m = await meta(app)
    first = await num(app, "first_ms")
    assert first >= int(m[f"seen:{LP}"]) + 1000  # N's last check + its recheck interval
    for h in handles:  # nothing written to any run while the step converted
        info = await app.get_run(h.id)
        assert info is not None and info.status == "completed"
        for entry in info.timeline:
            at = int(entry["at"].timestamp() * 1000)
            assert not first <= at <= int(m["migrated_at"]), entry
    text = new_log.read_text()
    assert f"processes of layout [{LP}] checked it" in text and "stopped writing" in text
    assert f"migration step test-step-{LP + 1} (test items): 4 converted" in text


@pytest.mark.one_partition  # a namespace of layout 1 (one tag) and its migration
@pytest.mark.timeout(120)
async def test_rollback_release_6707af1_runs_on_a_migrated_namespace_and_is_seen(
    app: StackShift, make_app: Any, redis_url: str, is_cluster: bool,
    procs: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:  # fmt: skip
    """A worker of release 6707af1 knows no layout: nothing can stop it. On this release's
    layout it runs runs of names without ':' (their keys did not change); new workers see it
    (its heartbeat has no layout) and sweep; `stackshift layout show` names it."""
    tree = _release_tree("6707af1", tmp_path)
    handles = [await app.start("simple", {"tag": f"rb{i}"}, queue_name="idle") for i in range(3)]
    assert (await meta(app))["layout"] == str(layout.LAYOUT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree),
           "STACKSHIFT_FIXTURE_REDIS_URL": redis_url,
           "STACKSHIFT_FIXTURE_NAMESPACE": app.namespace,
           "STACKSHIFT_FIXTURE_CLUSTER": "1" if is_cluster else "0"}  # fmt: skip
    log = tmp_path / "old.log"
    procs.append(_popen([sys.executable, "-m", "stackshift_redis.cli", "fixture_jobs:app",
                         "--queue", "idle"], tree, env, log))  # fmt: skip
    await wait_for(lambda: all_completed(app, handles), 60)
    m = await meta(app)
    assert m["layout"] == str(layout.LAYOUT) and "seen:1" not in m  # it never checked
    probe = make_app(app.namespace)._core.layout
    probe.worker = True
    await probe.ensure()
    assert probe.found is not None and probe.found.oldest_worker == 1
    out = _output([sys.executable, "-m", "stackshift_redis._ops.cli", "--redis-url",
                   redis_url, *(["--cluster"] if is_cluster else []), "--namespace",
                   app.namespace, "layout", "show"])  # fmt: skip
    assert "live workers: 1 of layout 1" in out and "stop them to finish the deploy" in out
    assert "Traceback" not in log.read_text()


def _popen(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> Any:
    return subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)  # fmt: skip


def _output(args: list[str]) -> str:
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _release_tree(release: str, tmp_path: Path) -> Path:
    """The code of `release` (git archive of its stackshift_redis and lua) with the
    fixture's jobs module as `fixture_jobs`; skips when the history is not there."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    probe = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{release}^{{commit}}"],
                           capture_output=True)  # fmt: skip
    if probe.returncode:
        pytest.skip(f"commit {release} is not in this checkout's history (a shallow clone?)")
    tree = tmp_path / release
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", release, "stackshift_redis",
                              "lua"], capture_output=True, check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    jobs = ROOT / "tests" / "upgrade" / "releases" / release / "jobs.py"
    shutil.copy(jobs, tree / "fixture_jobs.py")
    return tree


async def _tried(app: StackShift, item: str) -> bool:
    return bool(await app.redis.hexists(obs(app, "tries"), item))


async def _layout_is(app: StackShift, n: int) -> bool:
    return (await meta(app)).get("layout") == str(n)


async def _dump(app: StackShift) -> list[tuple[str, str, Any]]:
    keys = (await dump_namespace(app.redis, app.namespace))["keys"]
    return [(k["key"], k["type"], k["value"]) for k in keys]
