"""The app that observability tests run in `stackshift-worker tests.apps.observability_jobs:app`
subprocesses. Configured from the environment: REDIS_URL, STACKSHIFT_NAMESPACE, and
STACKSHIFT_SPANS (a file: an OpenTelemetry SDK tracer provider is set up that appends
every finished span to it as one JSON line; the app instruments itself automatically)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from stackshift_redis import RunContext

from . import app_from_env

app = app_from_env()
app.queue("idle")  # configured here, consumed by no worker of the tests: its runs stay ready

SPANS = os.environ.get("STACKSHIFT_SPANS")
if SPANS:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider()
    exporter = ConsoleSpanExporter(
        out=open(SPANS, "a"),  # noqa: SIM115 (open for the life of the process)
        formatter=lambda span: span.to_json(indent=None) + "\n",
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


@app.job("traced", queue="obs")
async def traced(ctx: RunContext) -> str:
    """A step, a sleep (the test makes another process resume it), another step."""
    before = await ctx.step.run("before", lambda: os.getpid())
    await ctx.step.sleep("nap", float(ctx.payload))
    after = await ctx.step.run("after", lambda: os.getpid())
    return f"{before}->{after}"


@app.job("ok", queue="obs")
async def ok(ctx: RunContext) -> Any:
    """Logs through ctx.logger, runs one step, returns its payload."""
    ctx.logger.info("hello from %s", ctx.job)
    await ctx.step.run("s", lambda: 1)
    return ctx.payload


@app.job("flaky", queue="obs", retries=2, backoff=0.05)
async def flaky(ctx: RunContext) -> str:
    """Fails its first attempt (in a step), then completes."""

    def once() -> str:
        if ctx.attempt == 1:
            raise RuntimeError("flaky once")
        return "fine"

    return str(await ctx.step.run("once", once))


@app.job("doomed", queue="obs", retries=1, backoff=0.05)
async def doomed(ctx: RunContext) -> None:
    """Always fails: retried once, then failed for good."""
    raise ValueError("always broken")


@app.job("waiter", queue="obs")
async def waiter(ctx: RunContext) -> Any:
    """Waits for the event obs.go with data k == payload."""
    evt = await ctx.step.wait_for_event("w", event="obs.go", match={"k": ctx.payload})
    return evt.data if evt else None


@app.job("snooze", queue="obs", retries=0)
async def snooze(ctx: RunContext) -> str:
    """Sleeps `payload` seconds (holds its slot)."""
    await asyncio.sleep(float(ctx.payload))
    return "rested"
