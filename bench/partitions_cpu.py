"""Partitions (issue 28): Redis CPU per master of one namespace on a 3-master cluster, with
partitions=1 and partitions=6.

For each P, a fresh local 3-master Redis Cluster (tests/redis_procs.py `start_cluster`), k
worker processes (`stackshift-worker bench.partitions_jobs:app`, their own processes so the
client side is not the bottleneck) and this process as the client, which runs one fixed
workload in three phases, `inflight` calls at a time:
  steps    N starts of a job of 3 steps (ctx.step.run x3)
  waits    N starts of a job that waits for the event `go` naming its id, then (all of
           them waiting) N send_event calls, one resuming each run
  invokes  N starts of a job that invokes a child (one step; on the parent's partition)
Measured per master: Redis CPU (INFO CPU used_cpu_sys + used_cpu_user, delta over the
phase) and commands (INFO commandstats). The workers' idle cost (blocking reads, heartbeats,
upkeep: measured per master before the workload, in CPU per second) is subtracted over the
phase's wall time in the `net` figures, which project the ceiling: runs/s =
1 / (the busiest master's CPU seconds per run). Per run = per top-level run (the invoked
child is part of its parent's cost). The machine is shared: CPU, not wall time, is the
measure; the wall column only says how long a phase took here.

    python -m bench.partitions_cpu [--quick] [--n 3000] [--workers 3] [--out partitions-cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

from bench.partitions_jobs import make_app
from stackshift_redis import StackShift
from stackshift_redis._core.keys import Keys
from stackshift_redis._core.partitions import partition_tags
from tests.redis_procs import LocalCluster, find_server, start_cluster

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--maxclients", "2000", "--loglevel", "warning"]
PHASES = ("steps", "waits", "invokes")


@dataclass
class Sample:
    """Per master (in slot order): CPU seconds and commands at one moment."""

    cpu: list[float]
    calls: list[Counter[str]]  # command -> calls (INFO commandstats; INFO itself left out)
    usec: list[Counter[str]]  # command -> microseconds
    at: float


@dataclass
class Phase:
    """What one phase cost, per master."""

    name: str
    runs: int
    cpu: list[float] = field(default_factory=list)  # raw CPU seconds
    net: list[float] = field(default_factory=list)  # less the idle cost over `wall`
    calls: list[Counter[str]] = field(default_factory=list)
    usec: list[Counter[str]] = field(default_factory=list)
    wall: float = 0.0

    @property
    def cmds(self) -> list[int]:
        """Commands per master."""
        return [sum(c.values()) for c in self.calls]

    def add(self, a: Sample, b: Sample, idle: list[float]) -> None:
        wall = b.at - a.at
        pairs = zip(a.cpu, b.cpu, idle, strict=True)
        raw = [y - x for x, y, _ in pairs]
        net = [max(0.0, r - i * wall) for r, i in zip(raw, idle, strict=True)]
        calls = [y - x for x, y in zip(a.calls, b.calls, strict=True)]
        usec = [y - x for x, y in zip(a.usec, b.usec, strict=True)]
        if not self.cpu:
            self.cpu, self.net, self.calls, self.usec = raw, net, calls, usec
        else:
            self.cpu = [s + r for s, r in zip(self.cpu, raw, strict=True)]
            self.net = [s + r for s, r in zip(self.net, net, strict=True)]
            self.calls = [s + c for s, c in zip(self.calls, calls, strict=True)]
            self.usec = [s + c for s, c in zip(self.usec, usec, strict=True)]
        self.wall += wall


@dataclass
class Result:
    """One P: the masters (port, slot range), where the partitions went, idle, phases."""

    partitions: int
    masters: list[tuple[int, int, int]]
    placement: str
    idle: list[float]
    phases: list[Phase]


def _masters(port: int) -> list[tuple[int, int, int]]:
    """(port, first slot, last slot) of each master, in slot order."""
    r = redis.Redis(port=port)
    try:
        slots = r.cluster("SLOTS")
    finally:
        r.close()
    return [(int(s[2][1]), int(s[0]), int(s[1])) for s in sorted(slots, key=lambda s: s[0])]


def _master_of(tag: str, masters: list[tuple[int, int, int]]) -> int:
    """The index of the master holding the tag's slot."""
    slot = key_slot(tag.encode())
    return next(i for i, (_, lo, hi) in enumerate(masters) if lo <= slot <= hi)


def _placement(ns: str, partitions: int, masters: list[tuple[int, int, int]]) -> str:
    """Which master holds {ns} and each partition's tag."""

    def master(tag: str) -> str:
        return _label(_master_of(tag, masters))

    parts = [f"p{p}->{master(t)}" for p, t in enumerate(partition_tags(ns, partitions))]
    where = "runs" if partitions == 1 else ", ".join(parts)
    return f"namespace tag {{{ns}}} on {master(ns)}; partitions: {where}"


def _label(i: int) -> str:
    return "ABCDEFGH"[i]


def _sample(clients: list[redis.Redis]) -> Sample:
    cpu, calls, usec = [], [], []
    for c in clients:
        info = c.info("cpu")
        cpu.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
        stats = {k.removeprefix("cmdstat_"): v for k, v in c.info("commandstats").items()}
        stats.pop("info", None)
        calls.append(Counter({k: int(v["calls"]) for k, v in stats.items()}))
        usec.append(Counter({k: int(v["usec"]) for k, v in stats.items()}))
    return Sample(cpu, calls, usec, time.monotonic())


def _noted(folder: str, kind: str) -> set[str]:
    """Run ids the workers noted in their `kind` files."""
    seen: set[str] = set()
    for path in Path(folder).glob(f"{kind}-*"):
        seen.update(path.read_text().split())
    return seen


async def _until_noted(folder: str, kind: str, ids: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ids <= _noted(folder, kind):
        failed = _noted(folder, "failed")
        if failed:
            raise RuntimeError(f"{len(failed)} runs failed, e.g. {sorted(failed)[:3]}")
        if time.monotonic() > deadline:
            missing = len(ids - _noted(folder, kind))
            raise TimeoutError(f"{missing} of {len(ids)} runs not {kind} after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def _bounded(n: int, inflight: int, call: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """call(0..n-1), `inflight` at a time; the results in order."""
    gate = asyncio.Semaphore(inflight)

    async def one(i: int) -> Any:
        async with gate:
            return await call(i)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _status(app: StackShift, ids: list[str], i: int) -> str | None:
    return await app.run(ids[i]).status()


async def _check(app: StackShift, ids: list[str], status: str, timeout: float = 60) -> None:
    """Every run has `status` (outside the measured spans); waits for stragglers."""
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while True:
        got = await _bounded(len(pending), 32, functools.partial(_status, app, list(pending)))
        pending = [r for r, s in zip(pending, got, strict=True) if s != status]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} runs not {status}, e.g. {pending[:3]}")
        await asyncio.sleep(0.5)


async def workload(
    app: StackShift, clients: list[redis.Redis], folder: str, idle: list[float], a: Any, n: int
) -> list[Phase]:
    """The three phases of n runs each, measured per master."""
    inflight, settle, tag = a.inflight, 0.3, uuid.uuid4().hex[:6]
    out = []

    async def starts(job: str) -> list[str]:
        handles = await _bounded(n, inflight, lambda i: app.start(job, {"id": f"{tag}-{i}"}))
        return [h.id for h in handles]

    for name, job in (("steps", "steps"), ("waits", "waiter"), ("invokes", "parent")):
        phase = Phase(name, n)
        s0 = _sample(clients)
        ids = await starts(job)
        if name == "waits":  # every run waits before the events go out
            await _until_noted(folder, "waiting", set(ids), a.timeout)
            await asyncio.sleep(settle)
            phase.add(s0, _sample(clients), idle)
            await _check(app, ids, "waiting")
            s0 = _sample(clients)
            await _bounded(n, inflight, lambda i: app.send_event("go", {"id": f"{tag}-{i}"}))
        await _until_noted(folder, "done", set(ids), a.timeout)
        await asyncio.sleep(settle)  # the last runs' finish scripts
        phase.add(s0, _sample(clients), idle)
        await _check(app, ids, "completed")
        out.append(phase)
        print(f"  {name}: {n} runs in {phase.wall:.1f} s", file=sys.stderr, flush=True)
        await asyncio.sleep(settle)
    return out


def _workers(port: int, ns: str, partitions: int, folder: str, a: Any) -> list[Any]:
    env = {**os.environ, "PBENCH_PORT": str(port), "PBENCH_NS": ns, "PBENCH_P": str(partitions),
           "PBENCH_DIR": folder}  # fmt: skip
    cmd = [sys.executable, "-m", "stackshift_redis.cli", "bench.partitions_jobs:app",
           "--concurrency", str(a.concurrency), "--log-level", "warning"]  # fmt: skip
    log = open(os.path.join(folder, "workers.log"), "ab")  # noqa: SIM115 (closed with them)
    return [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
            for _ in range(a.workers)]  # fmt: skip


def one(partitions: int, a: Any) -> Result:
    """A fresh cluster, workers and the workload at `partitions`."""
    ns = f"pb{uuid.uuid4().hex[:8]}"
    folder = tempfile.mkdtemp(prefix="pbench-")
    cluster: LocalCluster = start_cluster(find_server(), 3, ARGS)
    procs: list[Any] = []
    try:
        masters = _masters(cluster.ports[0])
        clients = [redis.Redis(port=p) for p, _, _ in masters]
        procs = _workers(masters[0][0], ns, partitions, folder, a)
        workers_key = Keys(ns).workers()
        home = clients[_master_of(ns, masters)]  # the namespace-wide keys' master
        deadline = time.monotonic() + 60
        while home.zcard(workers_key) < a.workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                tail = Path(folder, "workers.log").read_text()[-2000:]
                raise RuntimeError(f"the workers did not register:\n{tail}")
            time.sleep(0.2)
        time.sleep(1.0)
        s0 = _sample(clients)
        time.sleep(a.idle)
        s1 = _sample(clients)
        idle = [(y - x) / (s1.at - s0.at) for x, y in zip(s0.cpu, s1.cpu, strict=True)]

        async def drive() -> list[Phase]:
            app = make_app(masters[0][0], ns, partitions)
            try:
                await workload(app, clients, folder, idle, a, a.warmup)  # not measured
                return await workload(app, clients, folder, idle, a, a.n)
            finally:
                await app.close()
                await app.redis.aclose()

        phases = asyncio.run(drive())
        for c in clients:
            c.close()
        return Result(partitions, masters, _placement(ns, partitions, masters), idle, phases)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _total(phases: list[Phase]) -> Phase:
    t = Phase("all", sum(p.runs for p in phases))
    t.cpu = [sum(x) for x in zip(*(p.cpu for p in phases), strict=True)]
    t.net = [sum(x) for x in zip(*(p.net for p in phases), strict=True)]
    t.calls = [sum(x, Counter()) for x in zip(*(p.calls for p in phases), strict=True)]
    t.usec = [sum(x, Counter()) for x in zip(*(p.usec for p in phases), strict=True)]
    t.wall = sum(p.wall for p in phases)
    return t


def ceiling(p: Phase) -> float:
    """Runs/s the busiest master could carry: 1 / its net CPU seconds per run."""
    return p.runs / max(p.net)


def table(r: Result) -> list[str]:
    labels = "  ".join(f"{_label(i)}:{port} [{lo}-{hi}]" for i, (port, lo, hi) in
                       enumerate(r.masters))  # fmt: skip
    m = len(r.masters)
    lines = [f"P={r.partitions}  masters {labels}", f"  {r.placement}",
             "  idle (workers connected, no work): "
             + "  ".join(f"{_label(i)} {1e3 * x:.1f}" for i, x in enumerate(r.idle))
             + " ms CPU/s (subtracted in net)",
             f"  {'phase':<8} {'runs':>5} {'wall s':>6}  "
             + "  ".join(f"{_label(i) + ' ms':>7}" for i in range(m))
             + f"  {'net us/run':>10} {'raw us/run':>10} {'cmds/run':>8} {'busiest':>7}"
             f" {'ceiling/s':>9}"]  # fmt: skip
    for p in [*r.phases, _total(r.phases)]:
        share = max(p.net) / sum(p.net)
        lines.append(
            f"  {p.name:<8} {p.runs:5d} {p.wall:6.1f}  "
            + "  ".join(f"{1e3 * x:7.0f}" for x in p.net)
            + f"  {1e6 * sum(p.net) / p.runs:10.0f} {1e6 * sum(p.cpu) / p.runs:10.0f}"
            f" {sum(p.cmds) / p.runs:8.1f} {share:7.0%} {ceiling(p):9.0f}"
        )
    return lines


def breakdown(r: Result) -> list[str]:
    """Per phase and master: the commands with the most Redis time, per run (calls inside
    scripts are counted too, and their time is part of the script's)."""
    lines = [f"P={r.partitions} commands per run (x calls, us), the costliest per master:"]
    for p in r.phases:
        for i, (calls, usec) in enumerate(zip(p.calls, p.usec, strict=True)):
            top = ", ".join(f"{name} {calls[name] / p.runs:.2f}x {us / p.runs:.0f}"
                            for name, us in usec.most_common(5))  # fmt: skip
            lines.append(f"  {p.name:<8} {_label(i)}: {top}")
    return lines


def main(a: argparse.Namespace) -> None:
    if a.quick:
        a.n, a.idle = min(a.n, 300), min(a.idle, 5.0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    server = find_server().describe()
    results = []
    for partitions in a.partitions:
        print(f"P={partitions}: a fresh 3-master cluster ...", file=sys.stderr, flush=True)
        results.append(one(partitions, a))
    head = [
        f"bench/partitions_cpu.py, {datetime.date.today()}, commit {commit}, "
        f"{os.cpu_count()} cores ({platform.machine()}, shared), load average "
        f"{os.getloadavg()[0]:.1f}; {server}",
        f"command: python -m bench.partitions_cpu {' '.join(sys.argv[1:])}".rstrip(),
        f"workload per P: {a.n} runs per phase (steps, waits, invokes), {a.workers} worker "
        f"processes x concurrency {a.concurrency}, {a.inflight} client calls in flight, after "
        f"{a.warmup} runs per phase not measured; idle measured over {a.idle:.0f} s",
        "net = Redis CPU less the workers' idle cost over the phase's wall time; per run = "
        "per top-level run; busiest = the busiest master's share of the net CPU; ceiling = "
        "1 / (the busiest master's net CPU seconds per run)",
        "",
    ]
    lines = list(head)
    for r in results:
        lines += [*table(r), ""]
    for r in results if a.commands else []:
        lines += [*breakdown(r), ""]
    if len(results) == 2:
        a1, a2 = (_total(r.phases) for r in results)
        p1, p2 = (r.partitions for r in results)
        lines.append(
            f"projected ceiling P={p2} / P={p1}: {ceiling(a2):.0f} / {ceiling(a1):.0f} runs/s"
            f" = {ceiling(a2) / ceiling(a1):.2f}x; total Redis CPU per run "
            f"{1e6 * sum(a2.net) / a2.runs:.0f} vs {1e6 * sum(a1.net) / a1.runs:.0f} us "
            f"({sum(a2.net) / a2.runs / (sum(a1.net) / a1.runs):.2f}x)"
        )
        for ph1, ph2 in zip(results[0].phases, results[1].phases, strict=True):
            lines.append(f"  {ph1.name:<8} ceiling {ceiling(ph2):7.0f} / {ceiling(ph1):7.0f} "
                         f"= {ceiling(ph2) / ceiling(ph1):.2f}x")  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if a.out:
        path = ROOT / "bench" / "results" / f"{datetime.date.today()}-{a.out}.txt"
        path.write_text(text + "\n")
        print(f"saved to {path.relative_to(ROOT)}")


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # the finally blocks stop what started


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="300 runs per phase (< 2 min)")
    p.add_argument("--n", type=int, default=3000, help="runs per phase")
    p.add_argument("--partitions", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 6], help="partition counts to compare (default 1,6)")  # fmt: skip
    p.add_argument("--workers", type=int, default=3, help="worker processes")
    p.add_argument("--concurrency", type=int, default=32, help="per worker process")
    p.add_argument("--inflight", type=int, default=32, help="client calls in flight")
    p.add_argument("--warmup", type=int, default=50, help="runs per phase before measuring")
    p.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take")
    p.add_argument("--commands", action="store_true", help="print the costliest commands")
    p.add_argument("--out", default="", help="also save to bench/results/<date>-<out>.txt")
    main(p.parse_args())
