"""Transactional steps through faults, with real worker processes on real Redis
(tests/apps/transact_jobs.py): SIGKILL right before and right after the commit, 20% of
commit replies lost, and workers SIGSTOPped before their commit until their lease expired
(the commit arrives late and must write nothing). Each run commits a per-run counter, a
shared bucket counter, an event (its on_event run commits a counter too) and a child run
(which commits its own counter): every one must be applied exactly once. With partitions
the event's other legs and a child routed elsewhere by its idempotency key go through the
commit's outbox: exactly once too."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import pytest
from apps.transact_jobs import bucket_name, counter_name
from helpers import skip_on_cluster, spawn_worker, wait_for, zcard_parts
from test_lost_replies import DroppingProxy

from stackshift_redis import StackShift
from stackshift_redis._core.luasrc import source

TARGET = "tests.apps.transact_jobs:app"
N = int(os.environ.get("STACKSHIFT_TX_RUNS", "1000"))
BUCKETS = 10
LEASE_S = 1.0


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


class Fleet:
    """Worker processes kept at `size`: a dead one is replaced; a stopped one is continued
    once its lease has surely expired (its commit then arrives late)."""

    def __init__(self, spawn: Callable[[], subprocess.Popen[bytes]], size: int) -> None:
        self.spawn = spawn
        self.procs = [spawn() for _ in range(size)]
        self.died = 0
        self.stops = 0
        self._since: dict[int, float] = {}

    def tend(self) -> None:
        now = time.monotonic()
        for i, p in enumerate(self.procs):
            if p.poll() is not None:
                self.died += 1
                self.procs[i] = self.spawn()
            elif _stopped(p.pid):
                since = self._since.setdefault(p.pid, now)
                if now - since > LEASE_S * 2.5:
                    self.stops += 1
                    del self._since[p.pid]
                    p.send_signal(signal.SIGCONT)

    def continue_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


async def _values(app: StackShift, names: list[str]) -> list[int]:
    ns = app._core  # a state name's key is on its partition (skip_on_cluster: one MGET)
    out: list[int] = []
    for lo in range(0, len(names), 500):
        raw = await app.redis.mget([ns.name_keys(n).state(n) for n in names[lo : lo + 500]])
        out += [int(v or 0) for v in raw]
    return out


async def _exactly_once(
    app: StackShift, worker_url: str, fault: str, p: float, timeout: float
) -> Fleet:
    """Start N runs, keep two workers going through the fault, and check every effect."""
    env = {"STACKSHIFT_TX_FAULT": fault, "STACKSHIFT_TX_P": str(p)}
    ns = app.namespace

    def spawn() -> subprocess.Popen[bytes]:
        return spawn_worker(worker_url, ns, "--concurrency", "8", env=env, target=TARGET)

    runs = await app.start_many("tx_parent", list(range(N)), queue_name="tx")
    fleet = Fleet(spawn, 2)
    names = [counter_name(i) for i in range(N)]
    names += [f"{kind}:{i}" for kind in ("child", "ev") for i in range(N)]
    deadline = time.monotonic() + timeout
    try:
        while True:
            fleet.tend()
            if all(v >= 1 for v in await _values(app, names)):
                break
            assert time.monotonic() < deadline, f"not done in {timeout}s: {await _left(app, names)}"
            await asyncio.sleep(0.2)
        fleet.continue_all()  # late commits of stopped workers now arrive (and write nothing)
        await asyncio.sleep(LEASE_S * 2)
        await wait_for(lambda: _all_completed(app, [r.id for r in runs]), 60)
        # a child's count is written by its step, and the child completes just after
        await wait_for(lambda: _children_done(app), 60)
    finally:
        fleet.kill()
    values = await _values(app, names)
    wrong = [n for n, v in zip(names, values, strict=True) if v != 1]
    assert not wrong, wrong[:20]
    buckets = await _values(app, [bucket_name(b) for b in range(BUCKETS)])
    assert buckets == [N // BUCKETS] * BUCKETS
    results = [(await app.get_run(r.id)).result for r in runs]  # type: ignore[union-attr]
    for b in range(BUCKETS):  # each run of a bucket wrote a distinct value: serializable
        assert sorted(results[b::BUCKETS]) == list(range(1, N // BUCKETS + 1))
    assert await _children_done(app)
    print(f"{fault or 'lost replies'}: {N} runs, {fleet.died} killed, {fleet.stops} stopped")
    return fleet


async def _children_done(app: StackShift) -> bool:
    """Every tx_child run completed (one per parent: none made twice)."""
    return await zcard_parts(app, lambda k: k.idx_job_status("tx_child", "completed")) == N


async def _left(app: StackShift, names: list[str]) -> int:
    return sum(v == 0 for v in await _values(app, names))


async def _all_completed(app: StackShift, ids: list[str]) -> bool:
    ns = app._core
    async with app.redis.pipeline(transaction=False) as pipe:
        for rid in ids:
            pipe.hget(ns.keys_of(rid).run(rid), "status")
        statuses = await pipe.execute()
    return all(s == b"completed" for s in statuses)


@skip_on_cluster  # 1,000 runs per fault: once, on standalone Redis (CI time)
@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
async def test_sigkill_at_the_commit(make_app: Any, redis_url: str, point: str) -> None:
    app = make_app()
    fleet = await _exactly_once(app, redis_url, f"{point}:kill", 0.004, timeout=240)
    assert fleet.died >= 3, "too few kills to mean anything"
    await app.close()


@skip_on_cluster
async def test_a_commit_arriving_after_its_lease_writes_nothing(
    make_app: Any, redis_url: str
) -> None:
    app = make_app()
    fleet = await _exactly_once(app, redis_url, "before_commit:stop", 0.004, timeout=240)
    assert fleet.stops >= 3, "too few stopped workers to mean anything"
    await app.close()


@skip_on_cluster  # the proxy fronts one server
async def test_lost_commit_replies(make_app: Any, redis_url: str) -> None:
    app = make_app()
    u = urlparse(redis_url)
    sha = hashlib.sha1(source("transact").encode()).hexdigest().upper().encode()
    proxy = DroppingProxy((u.hostname or "127.0.0.1", u.port or 6379), 0.2, match=sha)
    await proxy.start()
    try:
        await _exactly_once(app, f"redis://127.0.0.1:{proxy.port}/0", "", 0, timeout=240)
        print(f"commit replies dropped: {proxy.dropped}")
        assert proxy.dropped > 100, proxy.dropped
    finally:
        await proxy.close()
    await app.close()


async def test_fifty_concurrent_increments_end_at_fifty(
    make_app: Any, redis_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    app = make_app()
    runs = await app.start_many("tx_incr", [None] * 50, queue_name="tx")
    for _ in range(2):
        procs.append(spawn_worker(redis_url, app.namespace, "-c", "25", target=TARGET))
    results = [await r.result(timeout=60) for r in runs]
    assert sorted(results) == list(range(1, 51))
    assert await app.state.get("one") == 50
    await app.close()
