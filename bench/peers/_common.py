"""Shared driver machinery for the peer benchmark (stdlib only: runs in every peer venv).

A driver module builds a `Peer` (how to connect, enqueue one job, enqueue a bulk, and run
one worker process) and calls `main(peer)`. Modes:

* ``--mode enqueue``: rate of one-at-a-time, 32-in-flight and bulk enqueues (jobs/s).
* ``--mode process``: enqueue N no-op jobs with no worker running, then start ONE worker
  process (this script again, ``--mode worker``) and measure it while it drains the queue.
* ``--mode worker``: run the library's worker (used by ``process``).

Completion is measured without touching Redis: the no-op job calls `mark(b"S")` on entry
and `mark(b"E")` on exit, which appends a 19-byte timestamp record to a file
(one O_APPEND ``write`` syscall, a few microseconds; works across rq's forked work horses).
The parent polls that file, so the only Redis traffic measured is the library's own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

IN_FLIGHT = 32
BULK_CHUNK = 1000
WARMUP = 100
REC = 19  # b"S" + b"%17.6f" + b"\n"
STALL = 30.0  # seconds without a job starting or ending: give up on the run
STARTUP_GRACE = 90.0  # seconds allowed before the first job starts
_MARK_FD: int | None = None


def mark(tag: bytes) -> None:
    """Record a start (b"S") or end (b"E") timestamp for the current job."""
    global _MARK_FD
    if _MARK_FD is None:
        path = os.environ.get("BENCH_MARK_FILE")
        if not path:
            return
        _MARK_FD = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_MARK_FD, b"%s%17.6f\n" % (tag, time.time()))


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


class Resp:
    """Minimal RESP2 client for INFO/FLUSHALL, so drivers need no particular redis-py."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout)
        self.buf = self.sock.makefile("rb")

    def call(self, *args: str) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self) -> Any:
        line = self.buf.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.buf.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP reply {line!r}")

    def close(self) -> None:
        self.buf.close()
        self.sock.close()


def info(url: str) -> dict[str, Any]:
    """Counters used for per-job costs. INFO's own calls are excluded from the command sums."""
    c = Resp(url)
    try:
        text = c.call("INFO", "all")
    finally:
        c.close()
    raw: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            raw[k] = v
    calls, info_calls = 0, 0
    for k, v in raw.items():
        if k.startswith("cmdstat_"):
            n = int(v.split("calls=", 1)[1].split(",", 1)[0])
            calls += n
            if k == "cmdstat_info":
                info_calls = n
    return {
        "calls": calls - info_calls,
        "commands": int(raw["total_commands_processed"]) - info_calls,
        "reads": int(raw["total_reads_processed"]) - info_calls,
        "cpu": float(raw["used_cpu_sys"]) + float(raw["used_cpu_user"]),
        "memory": int(raw["used_memory"]),
        "version": raw.get("redis_version", "?"),
    }


def proc_cpu(pid: int) -> float:
    """utime+stime of pid plus its reaped children (rq forks one work horse per job)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


@dataclass
class Peer:
    """What a driver provides. With sync=True the client callables are plain functions."""

    name: str
    version: str
    connect: Callable[[str], Any]
    enqueue: Callable[[Any, int], Any]
    bulk: Callable[[Any, list[int]], Any] | None
    close: Callable[[Any], Any]
    run_worker: Callable[[str], None]
    sync: bool = False


async def _async_phase(peer: Peer, url: str, how: str, start: int, n: int) -> float:
    client = await peer.connect(url)
    try:
        for i in range(WARMUP):
            await peer.enqueue(client, -1 - i)
        t0 = time.perf_counter()
        if how == "seq":
            for i in range(start, start + n):
                await peer.enqueue(client, i)
        elif how == "par":
            it = iter(range(start, start + n))

            async def lane() -> None:
                for i in it:
                    await peer.enqueue(client, i)

            await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
        else:
            assert peer.bulk is not None
            for s in range(start, start + n, BULK_CHUNK):
                await peer.bulk(client, list(range(s, min(s + BULK_CHUNK, start + n))))
        return time.perf_counter() - t0
    finally:
        await peer.close(client)


def _sync_phase(peer: Peer, url: str, how: str, start: int, n: int) -> float:
    client = peer.connect(url)
    try:
        for i in range(WARMUP):
            peer.enqueue(client, -1 - i)
        t0 = time.perf_counter()
        if how == "seq":
            for i in range(start, start + n):
                peer.enqueue(client, i)
        elif how == "par":
            it = iter(range(start, start + n))
            lock = threading.Lock()

            def lane() -> None:
                while True:
                    with lock:
                        i = next(it, None)
                    if i is None:
                        return
                    peer.enqueue(client, i)

            with ThreadPoolExecutor(IN_FLIGHT) as ex:
                for fut in [ex.submit(lane) for _ in range(IN_FLIGHT)]:
                    fut.result()
        else:
            assert peer.bulk is not None
            for s in range(start, start + n, BULK_CHUNK):
                peer.bulk(client, list(range(s, min(s + BULK_CHUNK, start + n))))
        return time.perf_counter() - t0
    finally:
        peer.close(client)


def phase(peer: Peer, url: str, how: str, n: int, start: int = 0) -> float:
    """Seconds to enqueue n jobs with `how` in seq | par | bulk (after a short warm-up)."""
    if peer.sync:
        return _sync_phase(peer, url, how, start, n)
    return asyncio.run(_async_phase(peer, url, how, start, n))


def run_enqueue(peer: Peer, url: str, n: int, flush: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for how in ("seq", "par", "bulk"):
        if how == "bulk" and peer.bulk is None:
            out["bulk_rate"] = None
            continue
        if flush:
            _flush(url)
        out[f"{how}_rate"] = n / phase(peer, url, how, n)
    return out


def _flush(url: str) -> None:
    c = Resp(url)
    try:
        c.call("FLUSHALL")
    finally:
        c.close()


def _scan(path: str, pos: int, state: dict[str, Any]) -> int:
    """Read new complete mark records from pos; update counts and first/last times."""
    with open(path, "rb") as f:
        f.seek(pos)
        data = f.read()
    usable = len(data) - len(data) % REC
    for off in range(0, usable, REC):
        tag, ts = data[off : off + 1], float(data[off + 1 : off + REC - 1])
        if tag == b"S":
            state["started"] += 1
            state["first_start"] = min(state["first_start"], ts)
        else:
            state["done"] += 1
            state["last_end"] = max(state["last_end"], ts)
    return pos + usable


def run_process(
    peer: Peer, url: str, n: int, flush: bool, timeout: float, extra: list[str]
) -> dict[str, Any]:
    if flush:
        _flush(url)
    m0 = info(url)["memory"]
    how = "bulk" if peer.bulk is not None else "par"
    enq_s = phase(peer, url, how, n - WARMUP, start=0)  # warm-up jobs count towards n
    m1 = info(url)["memory"]
    out: dict[str, Any] = {"bytes_per_job": (m1 - m0) / n, "fill_rate": (n - WARMUP) / enq_s}
    fd, marks = tempfile.mkstemp(prefix=f"bench-{peer.name}-", suffix=".marks")
    os.close(fd)
    fd, log_path = tempfile.mkstemp(prefix=f"bench-{peer.name}-", suffix=".log")
    env = dict(os.environ, BENCH_MARK_FILE=marks, BENCH_REDIS_URL=url)
    cmd = [sys.executable, sys.argv[0], "--mode", "worker", "--redis-url", url, *extra]
    s0 = info(url)
    proc = subprocess.Popen(cmd, env=env, stdout=fd, stderr=subprocess.STDOUT)
    os.close(fd)
    st: dict[str, Any] = {"started": 0, "done": 0, "first_start": float("inf"), "last_end": 0.0}
    pos, cpu0, cpu1, deadline = 0, 0.0, 0.0, time.monotonic() + timeout
    why, seen, progress_at = "timeout", -1, time.monotonic() + STARTUP_GRACE - STALL
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            cpu = proc_cpu(proc.pid)
            pos = _scan(marks, pos, st)
            if st["started"] == 0:
                cpu0 = cpu  # last sample taken before the first job started
            if st["done"] >= n:
                cpu1 = proc_cpu(proc.pid)
                break
            if st["done"] + st["started"] != seen:
                seen, progress_at = st["done"] + st["started"], max(progress_at, time.monotonic())
            elif time.monotonic() - progress_at > STALL:
                why = f"no progress for {STALL:.0f}s"
                break
            time.sleep(0.02)
        s1 = info(url)
        if proc.poll() is not None:
            why = "worker exited"
    finally:
        _stop(proc)
    if st["done"] < n:
        with open(log_path, errors="replace") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
        tail = " | ".join(lines[-3:])[-500:]
        out["error"] = f"{st['done']}/{n} done ({why}, exit={proc.returncode}): {tail}"
        return out
    os.unlink(marks)
    os.unlink(log_path)
    span = st["last_end"] - st["first_start"]
    out.update(
        proc_rate=n / span,
        calls_per_job=(s1["calls"] - s0["calls"]) / n,
        commands_per_job=(s1["commands"] - s0["commands"]) / n,
        reads_per_job=(s1["reads"] - s0["reads"]) / n,
        worker_cpu_us=(cpu1 - cpu0) / n * 1e6,
        redis_cpu_us=(s1["cpu"] - s0["cpu"]) / n * 1e6,
        redis_version=s1["version"],
    )
    return out


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", default=redis_url())
    p.add_argument("--mode", choices=["enqueue", "process", "worker"], required=True)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--flush", action="store_true", help="FLUSHALL first (dedicated server only)")
    p.add_argument("--timeout", type=float, default=300.0, help="process mode: drain timeout")
    return p.parse_known_args(argv)


def main(peer: Peer, argv: list[str] | None = None) -> None:
    args, extra = parse_args(argv)
    os.environ["BENCH_REDIS_URL"] = args.redis_url
    if args.mode == "worker":
        peer.run_worker(args.redis_url)
        return
    res: dict[str, Any] = {"lib": peer.name, "version": peer.version, "mode": args.mode}
    res["n"] = args.n
    try:
        if args.mode == "enqueue":
            res.update(run_enqueue(peer, args.redis_url, args.n, args.flush))
        else:
            res.update(run_process(peer, args.redis_url, args.n, args.flush, args.timeout, extra))
    except Exception as e:  # reported in the table, never fatal for the harness
        res["error"] = f"{type(e).__name__}: {e}"[:600]
    print(json.dumps(res), flush=True)
