"""The libraries under test: one virtual environment per peer under bench/.venvs/.

stackshift-redis itself runs in the harness's own interpreter (the main environment);
it imports the package installed there (`./run` installs the checkout in editable mode).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"
PEERS_DIR = BENCH / "peers"
INSTALL_TIMEOUT = 900.0


@dataclass(frozen=True)
class Lib:
    name: str  # row label
    driver: str  # file in bench/peers/
    venv: str | None  # None: the main environment
    requirements: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # extra driver args
    note: str = ""


# Pinned to the versions this harness was written against; bump deliberately.
LIBS: dict[str, Lib] = {
    lib.name: lib
    for lib in [
        Lib("stackshift", "stackshift_driver.py", None, note="worker concurrency=10 (default)"),
        Lib("arq", "arq_driver.py", "arq", ("arq==0.28.0",), note="max_jobs=10, poll_delay=0.5s"),
        Lib(
            "saq", "saq_driver.py", "saq", ("saq[redis]==0.26.4", "typing_extensions"),
            note="concurrency=10",
        ),
        Lib("rq", "rq_driver.py", "rq", ("rq==3.0.0",), note="Worker: forks per job"),
        Lib(
            "rq-simple", "rq_driver.py", "rq", ("rq==3.0.0",), ("--worker-class", "simple"),
            note="SimpleWorker: no fork",
        ),
        Lib(
            "taskiq", "taskiq_driver.py", "taskiq", ("taskiq==0.13.0", "taskiq-redis==1.2.4"),
            note="RedisStreamBroker+result backend, max_async_tasks=100",
        ),
        Lib("streaq", "streaq_driver.py", "streaq", ("streaq==7.2.0",), note="concurrency=16"),
        Lib("bullmq", "bullmq_driver.py", "bullmq", ("bullmq==3.4.4",), note="concurrency=1"),
    ]
}  # fmt: skip


def python_for(lib: Lib) -> Path:
    if lib.venv is None:
        return Path(sys.executable)
    return VENVS / lib.venv / "bin" / "python"


def ensure(lib: Lib, log: list[str]) -> str | None:
    """Create/refresh lib's venv if its requirements changed; returns an error or None."""
    if lib.venv is None:
        return _check_main()
    venv = VENVS / lib.venv
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(lib.requirements)
    if stamp.exists() and stamp.read_text() == wanted and python_for(lib).exists():
        return None
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python_for(lib)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *lib.requirements],
    ]  # fmt: skip
    for cmd in steps:
        log.append(" ".join(cmd))
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"install timed out: {' '.join(cmd)}"
        if p.returncode != 0:
            return f"install failed: {(p.stderr or p.stdout).strip()[-400:]}"
    stamp.write_text(wanted)
    return None


def _check_main() -> str | None:
    code = "import stackshift_redis"
    root = str(BENCH.parent)
    try:
        p = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
            cwd=root, env=dict(os.environ, PYTHONPATH=root),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "import stackshift_redis timed out"
    if p.returncode != 0:
        return f"cannot import stackshift_redis: {p.stderr.strip()[-300:]}"
    return None
