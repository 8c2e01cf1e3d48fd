"""`stackshift-worker --processes N` as real processes: the supervisor starts N workers,
restarts one that dies, forwards SIGTERM, and gives up (exit 1) when workers keep dying at
start (stackshift_redis/_worker/supervisor.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import spawn_worker, wait_exit, wait_for

from stackshift_redis import StackShift


def _children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def test_processes_restart_a_dying_worker_and_stop_on_sigterm(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any], tmp_path: Path
) -> None:
    client = make_app()
    with (tmp_path / "sup.log").open("wb") as log:
        sup = spawn_worker(
            redis_url, client.namespace, "--queue", "cli", "--processes", "2", log=log
        )
        procs.append(sup)
        runs = await client.start_many("quick", list(range(10)), queue_name="cli")
        assert [await r.result(timeout=30) for r in runs] == list(range(10))
        await wait_for(lambda: len(_children(sup.pid)) == 2, timeout=20)
        first = _children(sup.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: len(_children(sup.pid) - first) == 1, timeout=20)
        now = _children(sup.pid)
        assert len(now) == 2 and victim not in now
        more = await client.start_many("quick", list(range(10, 20)), queue_name="cli")
        assert [await r.result(timeout=30) for r in more] == list(range(10, 20))
        sup.send_signal(signal.SIGTERM)
        code = await wait_exit(sup, 40)
    text = (tmp_path / "sup.log").read_text()
    assert code == 0, text
    assert "exited with -9" in text
    assert all(_gone(pid) for pid in now)


async def test_workers_dying_at_start_make_the_supervisor_give_up(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any], tmp_path: Path
) -> None:
    client = make_app()
    with (tmp_path / "sup.log").open("wb") as log:  # a startup hook fails: each worker exits 1
        sup = spawn_worker(
            redis_url,
            client.namespace,
            "--queue",
            "cli",
            "--processes",
            "2",
            log=log,
            target="tests.apps.broken_start:app",
        )
        procs.append(sup)
        code = await wait_exit(sup, 90)
    text = (tmp_path / "sup.log").read_text()
    assert code == 1, text
    assert "died at start: giving up" in text
    assert "refused the connection" in text  # each worker's one line says why


async def test_a_bad_queue_name_is_one_line_before_any_worker_process_starts(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any], tmp_path: Path
) -> None:
    client = make_app()
    with (tmp_path / "sup.log").open("wb") as log:
        sup = spawn_worker(
            redis_url, client.namespace, "--queue", "bad name", "--processes", "2", log=log
        )
        procs.append(sup)
        code = await wait_exit(sup, 30)
    lines = (tmp_path / "sup.log").read_text().strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and "--queue" in lines[0] and "bad name" in lines[0], lines


async def test_a_bad_redis_url_is_one_line_before_any_worker_process_starts(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any], tmp_path: Path
) -> None:
    client = make_app()
    with (tmp_path / "sup.log").open("wb") as log:
        sup = spawn_worker(
            redis_url,
            client.namespace,
            "--redis-url",
            "localhost:6379",
            "--processes",
            "2",
            log=log,
        )
        procs.append(sup)
        code = await wait_exit(sup, 30)
    lines = (tmp_path / "sup.log").read_text().strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and "--redis-url" in lines[0] and "supervisor" not in lines[0]
