"""The `stackshift-worker` command as a process: burst mode, signals, bad targets, and
startup checks on the server (eviction policy warning, INFO/CONFIG denied by ACL)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis as syncredis
from helpers import ROOT, observed, spawn_worker, wait_exit, wait_for

from stackshift_redis import StackShift

_count = observed


def _log(tmp_path: Path, name: str = "worker.log") -> Any:
    return (tmp_path / name).open("wb")


async def test_burst_processes_queued_runs_and_exits_zero(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any], tmp_path: Path
) -> None:
    client = make_app()
    runs = await client.start_many("quick", list(range(7)), queue_name="cli")
    with _log(tmp_path) as log:
        procs.append(
            spawn_worker(
                redis_url,
                client.namespace,
                "--queue",
                "cli",
                "--concurrency",
                "2",
                "--burst",
                log=log,
            )
        )
        code = await wait_exit(procs[0], 20)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert [await r.status() for r in runs] == ["completed"] * 7
    assert [await r.result(timeout=1) for r in runs] == list(range(7))
    assert await _count(client, "quick") == 7


async def _seen(app: StackShift, job: str, name: str) -> int:
    """A counter of `sleepy` (plain key) or `sleepy_sync` (the namespace's state)."""
    if job == "sleepy_sync":
        return int(await app.state.get(name, default=0))
    return await _count(app, name)


@pytest.mark.parametrize("job", ["sleepy", "sleepy_sync"])
async def test_sigterm_lets_the_running_attempt_finish(
    make_app: Callable[..., StackShift],
    redis_url: str,
    procs: list[Any],
    tmp_path: Path,
    job: str,
) -> None:
    client = make_app()
    with _log(tmp_path) as log:
        proc = spawn_worker(redis_url, client.namespace, "--queue", "cli", log=log)
        procs.append(proc)
        run = await client.start(job, 1.5, queue_name="cli")
        await wait_for(lambda: _seen(client, job, "started"), timeout=15)
        proc.send_signal(signal.SIGTERM)
        code = await wait_exit(proc, 15)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert await run.status() == "completed"
    assert await _seen(client, job, "finished") == 1
    info = await client.get_run(run.id)
    assert info is not None and info.attempts == 1


@pytest.mark.parametrize("job", ["sleepy", "sleepy_sync"])
async def test_second_signal_forces_exit(
    make_app: Callable[..., StackShift],
    redis_url: str,
    procs: list[Any],
    tmp_path: Path,
    job: str,
) -> None:
    client = make_app()
    with _log(tmp_path) as log:
        proc = spawn_worker(redis_url, client.namespace, "--queue", "cli", log=log)
        procs.append(proc)
        run = await client.start(job, 60, queue_name="cli")
        await wait_for(lambda: _seen(client, job, "started"), timeout=15)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert proc.poll() is None  # still within its grace period
        proc.send_signal(signal.SIGINT)
        code = await wait_exit(proc, 20)
    text = (tmp_path / "worker.log").read_text()
    assert code == 0, f"worker did not exit after a second signal: {code}\n{text}"
    assert await _seen(client, job, "finished") == 0
    assert await run.status() == "queued"  # handed back at once for another worker


def _caught(pid: int, sig: signal.Signals) -> bool:
    """Whether the process has a handler for `sig` (Linux: SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt"))
    return bool(int(mask, 16) >> (sig - 1) & 1)


async def _handles_sigterm_before_importing(proc: subprocess.Popen[bytes]) -> None:
    """Wait until the process catches SIGTERM; by then it must not have imported the
    package yet (msgpack's C module, which the package imports, is not mapped)."""
    deadline = asyncio.get_running_loop().time() + 15
    while not _caught(proc.pid, signal.SIGTERM):
        assert asyncio.get_running_loop().time() < deadline, "SIGTERM never handled"
        await asyncio.sleep(0.001)
    assert not _mapped(proc.pid, "_cmsgpack"), "SIGTERM was handled after the package's imports"


def _mapped(pid: int, name: str) -> bool:
    """Whether a shared object whose path holds `name` is mapped in the process."""
    return name in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
async def test_a_restarted_worker_stopped_while_it_starts_exits_zero(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any], tmp_path: Path
) -> None:
    """Issue 23, defect 5: a freshly restarted worker exited -15 on SIGTERM. Until the
    worker installed its handlers (after importing the package and the app) Python's
    default action for SIGTERM applied; `_stackshift_redis_worker` now handles it before
    any import, and the worker stops cleanly whenever the signal comes."""
    client = make_app()
    await client.start("sleepy", 60, queue_name="cli")
    with _log(tmp_path) as log:
        first = spawn_worker(redis_url, client.namespace, "--queue", "cli", log=log)
        procs.append(first)
        await wait_for(lambda: _seen(client, "sleepy", "started"), timeout=15)
        first.send_signal(signal.SIGKILL)  # a crash; its supervisor restarts it at once
        assert await wait_exit(first, 10) == -signal.SIGKILL
        for delay in (0.0, 0.05, 0.2, 0.5, 1.5):
            proc = spawn_worker(redis_url, client.namespace, "--queue", "cli", log=log)
            procs.append(proc)
            await _handles_sigterm_before_importing(proc)
            await asyncio.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            code = await wait_exit(proc, 20)
            assert code == 0, f"SIGTERM {delay}s after its handler was set: exit {code}"
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text


def _cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stackshift_redis.cli", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("no_such_module_xyz:app", "no_such_module_xyz"),
        ("tests.apps.core_jobs:nope", "nope"),
        ("tests.apps.core_jobs:KEYED_OPTIONS", "not a StackShift app"),
        ("tests.apps.core_jobs", "module:attribute"),
    ],
)
def test_bad_target_is_a_clear_error(target: str, expected: str) -> None:
    done = _cli(target, "--burst", "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode != 0
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args", [["tests.apps.core_jobs"], [], ["tests.apps.core_jobs:app", "--concurrency", "0"]]
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    """Issue 23, defect 5: one `Error:` line and exit code 2, no usage lines."""
    done = _cli(*args, "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr


async def test_warns_when_maxmemory_policy_evicts(
    make_app: Callable[..., StackShift],
    redis_url: str,
    redis_server: Any,
    procs: list[Any],
    tmp_path: Path,
) -> None:
    client = make_app()
    admins = [syncredis.Redis.from_url(u) for u in redis_server.node_urls]
    before = str(admins[0].config_get("maxmemory-policy")["maxmemory-policy"])
    for admin in admins:
        admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        run = await client.start("quick", "x", queue_name="cli")
        with _log(tmp_path) as log:
            procs.append(
                spawn_worker(redis_url, client.namespace, "--queue", "cli", "--burst", log=log)
            )
            code = await wait_exit(procs[0], 20)
    finally:
        for admin in admins:
            admin.config_set("maxmemory-policy", before)
            admin.close()
    text = (tmp_path / "worker.log").read_text()
    assert code == 0, text
    assert "WARNING" in text and "maxmemory-policy is 'allkeys-lru'" in text
    assert "noeviction" in text
    assert await run.result(timeout=1) == "x"


async def test_works_when_info_and_config_are_denied(
    make_app: Callable[..., StackShift],
    redis_url: str,
    redis_server: Any,
    procs: list[Any],
    tmp_path: Path,
) -> None:
    admins = [syncredis.Redis.from_url(u) for u in redis_server.node_urls]
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    try:
        for admin in admins:  # ACLs are per server: every cluster node
            admin.acl_setuser(
                user,
                enabled=True,
                passwords=[f"+{password}"],
                keys=["~*"],
                channels=["&*"],
                commands=["+@all", "-info", "-config"],
            )
    except syncredis.ResponseError as exc:  # e.g. an external test server without ACL rights
        for admin in admins:
            admin.close()
        pytest.skip(f"cannot create an ACL user: {exc}")
    try:
        parts = urlsplit(redis_url)
        limited_url = f"redis://{user}:{password}@{parts.hostname}:{parts.port}{parts.path}"
        limited = syncredis.Redis.from_url(limited_url)
        with pytest.raises(syncredis.exceptions.NoPermissionError):
            limited.info()
        limited.close()

        client = make_app()
        runs = await client.start_many("quick", [1, 2, 3], queue_name="cli")
        with _log(tmp_path) as log:
            procs.append(
                spawn_worker(limited_url, client.namespace, "--queue", "cli", "--burst", log=log)
            )
            code = await wait_exit(procs[0], 20)
        text = (tmp_path / "worker.log").read_text()
        assert code == 0, text
        assert "Traceback" not in text and "maxmemory-policy" in text  # "not checked"
        assert [await r.result(timeout=1) for r in runs] == [1, 2, 3]
    finally:
        for admin in admins:
            admin.acl_deluser(user)
            admin.close()
