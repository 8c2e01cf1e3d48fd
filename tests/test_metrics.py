"""Metrics (prometheus-client): the counters and histograms a real worker process serves
on --metrics-port after completed, retried, failed and resumed runs; the per-queue gauges
(ready, scheduled, running, waiting) agree with the runs' real statuses after every kind
of transition; events sent are counted where they are sent."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from helpers import spawn_worker, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stackshift_redis import RunContext, RunFailed, StackShift
from stackshift_redis.metrics import register

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
LIVE = ("queued", "scheduled", "running", "waiting")


def _parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return _parse(resp.read().decode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _truth(app: StackShift) -> dict[str, dict[str, int]]:
    """Per queue and live status, how many runs have it (from the status indexes)."""
    out: dict[str, dict[str, int]] = {}
    k = app._core.keys
    queues = sorted({j.queue for j in app.jobs.values()})
    for status in LIVE:  # running runs have no index: they are in their queues' leases
        keys = [k.leases(q) for q in queues] if status == "running" else [k.ord_status(status)]
        for rid in [m for key in keys for m in await app.redis.zrange(key, 0, -1)]:
            queue = (
                await app.redis.hget(app._core.keys_of(rid.decode()).run(rid.decode()), "queue")
            ).decode()
            counts = out.setdefault(queue, dict.fromkeys(LIVE, 0))
            counts[status] += 1
    return out


async def _gauges(app: StackShift) -> dict[str, dict[str, int]]:
    _, stats = await app._core.scripts.queue_stats(sorted({j.queue for j in app.jobs.values()}))
    return {
        s.queue: {"queued": s.ready, "scheduled": s.scheduled, "running": s.running,
                  "waiting": s.waiting}
        for s in stats
    }  # fmt: skip


async def _agree(app: StackShift, queues: list[str]) -> bool:
    truth, gauges = await _truth(app), await _gauges(app)
    zero = dict.fromkeys(LIVE, 0)
    return all(truth.get(q, zero) == gauges.get(q, zero) for q in queues)


async def test_queue_gauges_follow_every_transition(app: StackShift, running_worker: Any) -> None:
    gate = asyncio.Event()

    @app.job("a", queue="qa", retries=1, backoff=30)
    async def a(ctx: RunContext) -> str:
        if ctx.payload == "fail":
            raise RuntimeError("retried in 30 s")
        if ctx.payload == "sleep":
            await ctx.step.sleep("nap", 30)
        if ctx.payload == "wait":
            await ctx.step.wait_for_event("w", event="go", match={"k": 1})
        if ctx.payload == "hold":
            await gate.wait()
        if ctx.payload == "nap":  # waiting, then woken by its timer
            await ctx.step.sleep("short", 0.1)
        return "done"

    app.job("b", lambda ctx: None, queue="qb")
    queues = ["qa", "qb"]
    runs = await app.start_many("a", ["ok"] * 3 + ["fail", "sleep", "wait", "wait", "hold"])
    later = await app.start_many("a", ["ok", "ok"], delay=60)
    soon = await app.start_many("a", ["ok", "nap"], delay=0.2)  # scheduled, then promoted
    other = await app.start_many("b", [1, 2, 3])
    await app.cancel(other[0].id)  # queued -> cancelled
    await app.cancel(later[0].id)  # scheduled -> cancelled
    assert await _agree(app, queues)
    assert (await _gauges(app))["qa"] == {"queued": 8, "scheduled": 3, "running": 0,
                                          "waiting": 0}  # fmt: skip
    running_worker(app, queues=["qa"])
    assert [await r.result(timeout=10) for r in soon] == ["done", "done"]
    expected = {"queued": 0, "scheduled": 2, "running": 1, "waiting": 3}  # retry + delay 60
    await wait_for(lambda: _is_now(app, "qa", expected))
    assert await _agree(app, queues)
    await app.send_event("go", {"k": 1})  # two waiting -> queued -> completed
    await app.cancel(runs[4].id)  # the sleeping one: waiting -> cancelled
    gate.set()
    await wait_for(lambda: _count(app, "qa", "waiting", 0))
    await wait_for(lambda: _count(app, "qa", "running", 0))
    assert await _agree(app, queues)
    assert (await _gauges(app))["qb"]["queued"] == 2


async def _count(app: StackShift, queue: str, status: str, n: int) -> bool:
    return (await _gauges(app)).get(queue, {}).get(status) == n


async def _is_now(app: StackShift, queue: str, expected: dict[str, int]) -> bool:
    return (await _gauges(app)).get(queue) == expected


async def test_registering_in_a_registry_counts_events_and_reads_gauges(app: StackShift) -> None:
    app.job("j", lambda ctx: None, queue="media")
    registry = CollectorRegistry()
    hook = register(app, registry)
    await app.start_many("j", [1, 2])
    await app.send_event("user.signup", {"u": 1}, id="e1")
    await app.send_event("user.signup", {"u": 1}, id="e1")  # a duplicate: not counted
    text = (await asyncio.to_thread(generate_latest, registry)).decode()
    samples = _parse(text)
    assert _get(samples, "stackshift_events_sent_total", event="user.signup") == 1
    assert _get(samples, "stackshift_queue_ready", queue="media") == 2
    assert _get(samples, "stackshift_queue_running", queue="media") == 0
    assert _get(samples, "stackshift_workers_alive") == 0
    assert hook.collector is not None
    hook.collector.close()


async def test_a_worker_process_serves_counters_histograms_and_gauges(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = _free_port()
    with (tmp_path / "worker.log").open("wb") as log:
        procs.append(spawn_worker(
            redis_url, app.namespace, "--queue", "obs", "--metrics-port", str(port), log=log,
            target="tests.apps.observability_jobs:app",
        ))  # fmt: skip
    oks = await app.start_many("ok", [1, 2, 3], queue_name="obs")
    flaky = await app.start("flaky", queue_name="obs")
    doomed = await app.start("doomed", queue_name="obs")
    waiter = await app.start("waiter", "k1", queue_name="obs")
    snooze = await app.start("snooze", 60, queue_name="obs")
    await app.start("ok", 9, queue_name="obs", delay=600)
    await app.start_many("ok", [7, 8], queue_name="idle")
    assert [await r.result(timeout=20) for r in oks] == [1, 2, 3]
    assert await flaky.result(timeout=10) == "fine"
    try:
        await doomed.result(timeout=10)
        raise AssertionError("doomed completed")
    except RunFailed:
        pass
    await wait_for(lambda: _is(waiter, "waiting"))
    await wait_for(lambda: _is(snooze, "running"))
    obs = {"queue": "obs"}

    async def counted() -> bool:  # once the worker has each finish script's answer
        s = await asyncio.to_thread(_scrape, port)
        done, failed = "stackshift_runs_completed_total", "stackshift_runs_failed_total"
        ok, flaky = _get(s, done, job="ok", **obs), _get(s, done, job="flaky", **obs)
        return (ok, flaky, _get(s, failed, job="doomed", **obs)) == (3, 1, 1)

    await wait_for(counted)
    samples = await asyncio.to_thread(_scrape, port)
    assert _get(samples, "stackshift_runs_completed_total", job="ok", **obs) == 3
    assert _get(samples, "stackshift_runs_completed_total", job="flaky", **obs) == 1
    assert _get(samples, "stackshift_runs_retried_total", job="flaky", **obs) == 1
    assert _get(samples, "stackshift_runs_retried_total", job="doomed", **obs) == 1
    assert _get(samples, "stackshift_runs_failed_total", job="doomed", **obs) == 1
    assert _get(samples, "stackshift_runs_started_total", job="ok", **obs) == 3
    assert _get(samples, "stackshift_runs_started_total", job="doomed", **obs) == 1
    assert _get(samples, "stackshift_steps_completed_total", job="ok", kind="run", **obs) == 3
    assert _get(samples, "stackshift_steps_failed_total", job="flaky", kind="run", **obs) == 1
    assert _get(samples, "stackshift_attempt_duration_seconds_count", job="doomed", **obs) == 2
    assert _get(samples, "stackshift_queue_wait_seconds_count", job="flaky", **obs) == 2
    assert _get(samples, "stackshift_queue_ready", queue="idle") == 2
    assert _get(samples, "stackshift_queue_scheduled", queue="obs") == 1
    assert _get(samples, "stackshift_queue_running", queue="obs") == 1
    assert _get(samples, "stackshift_queue_waiting", queue="obs") == 1
    assert _get(samples, "stackshift_workers_alive") == 1
    await app.send_event("obs.go", {"k": "k1"})
    assert await waiter.result(timeout=10) == {"k": "k1"}
    await wait_for(
        lambda: _scraped(port, "stackshift_runs_completed_total", 1, job="waiter", **obs)
    )
    samples = await asyncio.to_thread(_scrape, port)
    assert _get(samples, "stackshift_runs_resumed_total", job="waiter", **obs) == 1
    assert _get(samples, "stackshift_event_resume_latency_seconds_count", job="waiter", **obs) == 1
    assert _get(samples, "stackshift_queue_waiting", queue="obs") == 0
    assert _get(samples, "stackshift_runs_completed_total", job="waiter", **obs) == 1


async def _scraped(port: int, name: str, value: float, **labels: str) -> bool:
    return _get(await asyncio.to_thread(_scrape, port), name, **labels) == value


async def _is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)
