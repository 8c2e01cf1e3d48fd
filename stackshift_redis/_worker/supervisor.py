"""`stackshift-worker --processes N`: a supervisor and N worker processes.

The supervisor runs no worker itself. It starts N children (the same command with
`--processes 1`, each in a session of its own, so a terminal's Ctrl-C reaches only the
supervisor), restarts a child that dies (after a short pause that grows while children
keep dying), forwards SIGTERM and SIGINT to every child (a second signal is forwarded
too: the children then stop at once), and exits once every child has exited: 0 when all
exited 0. A child that dies within `QUICK_S` of its start died "at start" (a bad import,
no Redis, a newer storage layout): after `MAX_QUICK` such deaths in a row the supervisor
stops the others and exits 1, instead of restarting forever. With `--burst` a child that
exits 0 is done and is not restarted.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("stackshift.worker")

QUICK_S = 15.0  # a child that dies sooner than this after its start died at start (a slow
# import on a loaded machine takes seconds: 5 s let a failing import pass as a crash)
MAX_QUICK = 5  # deaths at start in a row (over all children) before giving up
PAUSE_S = (0.2, 5.0)  # pause before a restart: doubles per death at start, up to the max
POLL_S = 0.1
ENTRY = "_stackshift_redis_worker"  # the installed command's module (handles early signals)


@dataclass
class _Child:
    slot: int
    proc: subprocess.Popen[bytes]
    started: float


class Supervisor:
    """Runs `processes` copies of a worker command (`argv(slot)` gives the arguments of
    the child in slot 0..processes-1) and supervises them (see the module docstring)."""

    def __init__(self, processes: int, argv: Callable[[int], Sequence[str]], burst: bool) -> None:
        self.processes = processes
        self.argv = argv
        self.burst = burst
        self.children: dict[int, _Child] = {}
        self.codes: dict[int, int] = {}  # slot -> exit code of a child not restarted
        self.stopping = 0  # stop signals received
        self.quick = 0  # deaths at start in a row

    def _spawn(self, slot: int) -> None:
        cmd = [sys.executable, "-m", ENTRY, *self.argv(slot)]
        proc = subprocess.Popen(cmd, start_new_session=True)
        self.children[slot] = _Child(slot, proc, time.monotonic())
        log.info("supervisor: started worker process %d (pid %d)", slot, proc.pid)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping += 1
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signum)

    def _stop_all(self) -> None:
        self.stopping += 1
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Supervise until every child has exited; the supervisor's exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for slot in range(self.processes):
            self._spawn(slot)
        given_up = False
        restart_at: dict[int, float] = {}
        while self.children or restart_at:
            time.sleep(POLL_S)
            now = time.monotonic()
            for slot, child in list(self.children.items()):
                code = child.proc.poll()
                if code is None:
                    continue
                del self.children[slot]
                if self.stopping or (self.burst and code == 0):
                    self.codes[slot] = code
                    continue
                quick = now - child.started < QUICK_S
                self.quick = self.quick + 1 if quick else 0
                log.warning(
                    "supervisor: worker process %d (pid %d) exited with %d%s",
                    slot,
                    child.proc.pid,
                    code,
                    " at start" if quick else "",
                )
                if self.quick >= MAX_QUICK:
                    log.error(
                        "supervisor: %d worker processes in a row died at start: giving up",
                        self.quick,
                    )
                    self.codes[slot] = code
                    given_up = True
                    restart_at.clear()
                    self._stop_all()
                    continue
                pause = min(PAUSE_S[0] * 2 ** max(self.quick - 1, 0), PAUSE_S[1])
                restart_at[slot] = now + (pause if quick else PAUSE_S[0])
            for slot, at in list(restart_at.items()):
                if self.stopping:
                    del restart_at[slot]
                elif now >= at:
                    del restart_at[slot]
                    self._spawn(slot)
        if given_up:
            return 1
        # a child the forwarded signal ended before it could install its handler (it was
        # still starting: nothing claimed) stopped as asked
        stopped = (0, -signal.SIGTERM, -signal.SIGINT)
        return 0 if all(c in stopped for c in self.codes.values()) else 1
