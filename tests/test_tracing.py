"""Tracing (OpenTelemetry SDK, in-memory and file exporters): a run started inside a span
produces attempt and step spans whose parent is that span, also when its sleep resumes in
another worker process; runs an event starts join the sender's trace; errors are recorded;
without a configured SDK nothing is added."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import spawn_worker, wait_exit, wait_for
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from stackshift_redis import RunContext, StackShift, SyncRunContext
from stackshift_redis.tracing import TracingHook, auto_hook, instrument


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


async def test_attempt_and_step_spans_are_children_of_the_starting_span(
    app: StackShift, running_worker: Any, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    instrument(app, tracer_provider=provider)

    @app.job("order", retries=1, backoff=0.01)
    async def order(ctx: RunContext) -> int:
        a: int = await ctx.step.run("reserve", lambda: 1)
        await ctx.step.sleep("cool-off", 0.05)
        if ctx.attempt == 1:
            await ctx.step.run("charge", _boom)
        return a

    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("checkout request") as caller:
        run = await app.start("order")
    running_worker(app)
    assert await run.result(timeout=15) == 1
    await wait_for(lambda: len(_by_name(exporter.get_finished_spans(), "attempt order")) == 3)
    found = exporter.get_finished_spans()
    ctx = caller.get_span_context()
    attempts = _by_name(found, "attempt order")
    # first attempt parks at the sleep, the resumed one fails at charge, the retry completes
    assert [s.attributes["stackshift.resumed"] for s in attempts] == [False, True, False]
    # attempt as ctx.attempt (failed attempts + 1), execution: every take counts
    numbers = [
        (a.attributes["stackshift.attempt"], a.attributes["stackshift.execution"]) for a in attempts
    ]
    assert numbers == [(1, 1), (1, 2), (2, 3)]
    for span in attempts:
        assert span.parent is not None and span.parent.span_id == ctx.span_id
        assert span.context.trace_id == ctx.trace_id
        assert span.attributes["stackshift.run_id"] == run.id
        assert span.attributes["stackshift.job"] == "order"
        assert span.attributes["stackshift.queue"] == "default"
        assert span.attributes["stackshift.kind"] == "attempt"
    assert attempts[1].attributes["stackshift.resumed_by"] == "timer"
    assert attempts[1].status.status_code is StatusCode.ERROR
    assert attempts[2].status.status_code is StatusCode.UNSET
    steps = [s for s in found if s.attributes and s.attributes["stackshift.kind"] != "attempt"]
    ids = {a.context.span_id: i for i, a in enumerate(attempts)}
    # each step once, in the attempt that executed it (stored results are not spans)
    assert sorted((s.name, ids[s.parent.span_id]) for s in steps if s.parent) == [
        ("run charge", 1), ("run reserve", 0), ("sleep cool-off", 0),
    ]  # fmt: skip
    sleep = _by_name(found, "sleep cool-off")[0]
    assert [e.name for e in sleep.events] == ["stackshift.suspended"]
    failed = [s for s in _by_name(found, "run charge") if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].events[0].name == "exception"
    assert failed[0].events[0].attributes["exception.message"] == "card declined"


def _boom() -> None:
    raise RuntimeError("card declined")


async def test_runs_an_event_starts_join_the_senders_trace(
    app: StackShift, running_worker: Any, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    instrument(app, tracer_provider=provider)
    app.job("welcome", lambda ctx: "hi", on_event="user.signup")
    running_worker(app)
    with provider.get_tracer("test").start_as_current_span("signup handler") as caller:
        sent = await app.send_event("user.signup", {"user": 1})
    assert len(sent.started) == 1
    assert await app.run(sent.started[0]).result(timeout=10) == "hi"
    await wait_for(lambda: _by_name(exporter.get_finished_spans(), "attempt welcome"))
    span = _by_name(exporter.get_finished_spans(), "attempt welcome")[0]
    assert span.parent is not None and span.parent.span_id == caller.get_span_context().span_id
    assert span.context.trace_id == caller.get_span_context().trace_id


async def test_no_span_no_field_and_no_sdk_no_hook(
    app: StackShift, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, _ = spans
    hook = TracingHook(provider)
    assert hook.start_fields("j", "q") == {}  # no current span: nothing stored
    with provider.get_tracer("t").start_as_current_span("s"):
        fields = hook.start_fields("j", "q")
    assert set(fields) == {"traceparent"} and fields["traceparent"].startswith("00-")
    # the test process configures no global SDK provider: the app adds no hook
    assert auto_hook() is None
    assert not app._core.hooks


def _spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_sleep_resumed_by_another_worker_process_stays_in_the_trace(
    app: StackShift,
    redis_url: str,
    procs: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = spans
    instrument(app, tracer_provider=provider)  # the client side: stores the trace context
    files = [tmp_path / "spans-a.jsonl", tmp_path / "spans-b.jsonl"]

    def worker(i: int) -> subprocess.Popen[bytes]:
        env = {"STACKSHIFT_SPANS": str(files[i])}
        with (tmp_path / f"worker-{i}.log").open("wb") as log:
            proc = spawn_worker(
                redis_url, app.namespace, "--queue", "obs", log=log, env=env,
                target="tests.apps.observability_jobs:app",
            )  # fmt: skip
        procs.append(proc)
        return proc

    first = worker(0)
    with provider.get_tracer("test").start_as_current_span("api call") as caller:
        run = await app.start("traced", 0.5, queue_name="obs")
    await wait_for(lambda: any(s["name"] == "sleep nap" for s in _spans(files[0])), 20)
    first.send_signal(signal.SIGTERM)
    assert await wait_exit(first, 15) == 0
    worker(1)
    before, after = str(await run.result(timeout=20)).split("->")
    assert before != after  # the steps ran in two processes
    await wait_for(lambda: any(s["name"] == "attempt traced" for s in _spans(files[1])), 10)
    trace_id = f"0x{caller.get_span_context().trace_id:032x}"
    parent_id = f"0x{caller.get_span_context().span_id:016x}"
    a, b = _spans(files[0]), _spans(files[1])
    for found, steps in ((a, {"run before", "sleep nap"}), (b, {"run after"})):
        attempt = [s for s in found if s["name"] == "attempt traced"]
        assert len(attempt) == 1
        assert attempt[0]["parent_id"] == parent_id
        assert attempt[0]["context"]["trace_id"] == trace_id
        assert attempt[0]["attributes"]["stackshift.run_id"] == run.id
        children = {s["name"] for s in found if s["parent_id"] == attempt[0]["context"]["span_id"]}
        assert children == steps
    resumed = next(s for s in b if s["name"] == "attempt traced")
    assert resumed["attributes"]["stackshift.resumed"] is True


async def test_an_invoked_child_run_is_a_child_of_the_invoke_step(
    app: StackShift, running_worker: Any, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    instrument(app, tracer_provider=provider)
    app.job("thumb", lambda ctx: ctx.payload * 2)

    @app.job("upload")
    async def upload(ctx: RunContext) -> int:
        return int(await ctx.step.invoke("make-thumb", job="thumb", payload=21))

    with provider.get_tracer("test").start_as_current_span("request") as caller:
        run = await app.start("upload")
    running_worker(app)
    assert await run.result(timeout=10) == 42
    await wait_for(lambda: len(_by_name(exporter.get_finished_spans(), "attempt upload")) == 2)
    found = exporter.get_finished_spans()
    [invoke_step] = _by_name(found, "invoke make-thumb")
    [child] = _by_name(found, "attempt thumb")
    assert child.parent is not None and child.parent.span_id == invoke_step.context.span_id
    assert child.context.trace_id == caller.get_span_context().trace_id
    assert child.attributes["stackshift.run_id"] != run.id


async def test_the_sync_facade_and_plain_function_steps_keep_the_trace(
    app: StackShift, running_worker: Any, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    instrument(app, tracer_provider=provider)

    @app.job("report")
    def report(ctx: SyncRunContext) -> int:
        n: int = ctx.step.run("count", lambda: 3)
        ctx.step.sleep("pause", 0)  # due at once: a step on the loop, from this thread
        return n

    tracer = provider.get_tracer("test")

    def wsgi_view() -> tuple[str, int]:  # a WSGI thread: blocking calls, its own span
        with tracer.start_as_current_span("GET /report") as caller:
            handle = app.sync.start("report")
        return handle.id, caller.get_span_context().span_id

    run_id, caller_id = await asyncio.to_thread(wsgi_view)
    running_worker(app)
    assert await app.run(run_id).result(timeout=10) == 3
    await wait_for(lambda: _by_name(exporter.get_finished_spans(), "attempt report"))
    found = exporter.get_finished_spans()
    [attempt] = _by_name(found, "attempt report")
    assert attempt.parent is not None and attempt.parent.span_id == caller_id
    for name in ("run count", "sleep pause"):
        [step] = _by_name(found, name)
        assert step.parent is not None and step.parent.span_id == attempt.context.span_id
    app.sync.close()


def test_importing_and_using_the_package_imports_no_extra() -> None:
    code = (
        "import sys\n"
        "from stackshift_redis import StackShift\n"
        "import stackshift_redis.cli, stackshift_redis.metrics, stackshift_redis.tracing\n"
        "app = StackShift('redis://127.0.0.1:1/0', namespace='x')\n"
        "assert not app._core.hooks  # first use: no SDK configured, no hook\n"
        "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')\n"
        "      or m == 'opentelemetry.trace.propagation.tracecontext'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
