"""Outcomes are told once Redis recorded them: hooks, metrics, tracing and the outcome log
line hear an attempt's outcome after its finish script answered. A completion whose lease
was taken by another worker before the finish is `lost` (not counted as completed, its
span ends with an error); a finish Redis does not confirm is `unconfirmed`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from stackshift_redis import RunContext, StackShift
from stackshift_redis._client.state import State
from stackshift_redis._core.scripts import ScriptCall, TakenRun
from stackshift_redis._worker.attempts import Executor
from stackshift_redis.errors import RedisUnavailableError
from stackshift_redis.hooks import AttemptInput, Hook
from stackshift_redis.metrics import MetricsHook
from stackshift_redis.tracing import instrument

TAKE = {"max_deliveries": 5, "retention_ms": 60_000}


class Outcomes(Hook):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    def finished(self, inp: AttemptInput, outcome: str, error: BaseException | None) -> None:
        self.seen.append((inp.run_id, outcome, type(error).__name__ if error else None))


async def _until(check: Callable[[], bool], timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_a_completion_whose_lease_was_taken_is_lost_not_completed(
    app: StackShift, running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "stackshift.worker")
    registry = CollectorRegistry()
    app.add_hook(MetricsHook(registry))  # the counters alone (no gauges read from Redis)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(app, tracer_provider=provider)
    outcomes = Outcomes()
    app.add_hook(outcomes)
    stolen: list[TakenRun] = []
    workers: list[Any] = []

    @app.job("steal", retries=0)
    async def steal(ctx: RunContext) -> str:
        await ctx.step.run("work", lambda: "done")
        # the worker's first lease renewal is over (its reclaim comes next; the next
        # renewal is 10 s away)
        await _until(lambda: "reclaim:default" in workers[0].upkeep._next)
        # before the finish: the lease expires and another worker takes the run
        scripts = app._core.scripts_of(ctx.run_id)
        await app.redis.zadd(app._core.keys_of(ctx.run_id).leases("default"), {ctx.run_id: 1})
        await scripts.reclaim("default", 60_000)  # (or the worker's own reclaim duty did)
        reply = await scripts.take([("default", 60_000)], 1, taker="other", **TAKE)
        stolen.extend(reply.taken)
        return "mine"

    run = await app.start("steal")
    # its one slot is busy while the handler runs: only "other" can take the run
    workers.append(running_worker(app, concurrency=1))
    await _until(lambda: bool(outcomes.seen))
    assert outcomes.seen == [(run.id, "lost", "LeaseLostError")]
    assert [t.run_id for t in stolen] == [run.id]
    info = await app.get_run(run.id)  # nothing recorded: the other worker holds the run
    assert info is not None and info.status == "running" and info.result is None
    labels = {"job": "steal", "queue": "default"}
    for name in ("completed", "failed", "retried", "cancelled"):
        assert registry.get_sample_value(f"stackshift_runs_{name}_total", labels) in (None, 0)
    assert registry.get_sample_value("stackshift_runs_started_total", labels) == 1
    [span] = [s for s in exporter.get_finished_spans() if s.name == "attempt steal"]
    assert span.status.status_code is StatusCode.ERROR
    assert "LeaseLostError" in (span.status.description or "")
    lines = [r.getMessage() for r in caplog.records if r.name == "stackshift.worker"]
    assert any(
        "lease lost to another worker before its outcome (completed) was recorded" in line
        for line in lines
    )
    assert not any(line.endswith(" completed") for line in lines)


async def test_a_finish_redis_does_not_confirm_is_unconfirmed(app: StackShift) -> None:
    outcomes = Outcomes()
    app.add_hook(outcomes)
    registry = CollectorRegistry()
    app.add_hook(MetricsHook(registry))
    app.job("quick", lambda ctx: 1)
    sent: list[ScriptCall] = []

    async def unreachable(call: ScriptCall) -> object:
        sent.append(call)
        return RedisUnavailableError("Redis unavailable: connection refused")

    ns = app._core
    executor = Executor(
        ns, State(ns), asyncio.get_running_loop(), finish=unreachable, conf=ns.registry.queue,
        resources={},
    )  # fmt: skip
    run = await app.start("quick")
    [taken] = (await ns.scripts_of(str(run.id)).take([("default", 60_000)], 1, **TAKE)).taken
    await executor.run(executor.build(taken, 0.0))
    assert [c.script for c in sent] == ["complete"]
    assert outcomes.seen == [(run.id, "unconfirmed", "RedisUnavailableError")]
    labels = {"job": "quick", "queue": "default"}
    assert registry.get_sample_value("stackshift_runs_completed_total", labels) in (None, 0)
    assert await run.status() == "running"  # its lease expires and it is taken again
