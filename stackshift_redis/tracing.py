"""OpenTelemetry tracing (the `stackshift-redis[otel]` extra: opentelemetry-api).

A span per attempt and per step, in the trace of the code that started the run: `start()`
(and `send_event()` for runs an event starts) stores the caller's current span context as
the run field `x:traceparent` (W3C Trace Context), and every attempt of the run, on any
worker process and after every resume, is a child of that span. Attributes:
`stackshift.kind` (attempt, or the step's kind), `stackshift.name` (job or step name),
`stackshift.attempt` (as ctx.attempt: failed attempts + 1), `stackshift.execution` (the
run's executions so far, resumes included), `stackshift.run_id`, `stackshift.job`,
`stackshift.queue`; an exception is recorded on the span with status ERROR; a step that
parks the run (sleep, event wait, child) ends with the event `stackshift.suspended`. An
attempt's span ends once its outcome is recorded: when it could not be (the lease was
lost, Redis did not confirm), it ends with status ERROR too.

Every app instruments itself when opentelemetry-api is importable and, at the app's first
use (first start, send or attempt), a tracer provider has been configured (an SDK's, as
OpenTelemetry libraries expect); otherwise, or with OTEL_SDK_DISABLED=true, nothing is
added and nothing is imported. `instrument(app, tracer_provider=...)` adds it explicitly.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._attempt.parking import CancelRequested, Suspended
from ._client.client import Client
from .hooks import AttemptInput, Hook, Proceed, StepInput

TRACER_NAME = "stackshift_redis"


class TracingHook(Hook):
    """Spans for attempts and steps; the trace context of `start()` stored with the run."""

    def __init__(self, tracer_provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        self._propagator = TraceContextTextMapPropagator()

    def start_fields(self, job: str, queue: str) -> dict[str, str]:
        """The caller's current span as `traceparent` (and `tracestate`), if it has one."""
        if not self._trace.get_current_span().get_span_context().is_valid:
            return {}
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier

    @contextmanager
    def _span(self, name: str, attrs: dict[str, Any], context: Any = None) -> Iterator[Any]:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        with self._tracer.start_as_current_span(
            name,
            context=context,
            kind=SpanKind.CONSUMER if context is not None else SpanKind.INTERNAL,
            attributes=attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except Suspended as exc:
                span.add_event("stackshift.suspended", {"stackshift.step": str(exc)})
                raise
            except CancelRequested as exc:
                span.add_event("stackshift.cancelled", {"stackshift.reason": str(exc)})
                raise
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise

    def _attrs(self, inp: AttemptInput, kind: str, name: str) -> dict[str, Any]:
        return {
            "stackshift.kind": kind,
            "stackshift.name": name,
            "stackshift.attempt": inp.attempt,
            "stackshift.execution": inp.execution,
            "stackshift.run_id": inp.run_id,
            "stackshift.job": inp.job,
            "stackshift.queue": inp.queue,
        }

    async def attempt(self, inp: AttemptInput, proceed: Proceed) -> Any:
        """One span around the attempt and the record of its outcome, a child of the span
        that started the run."""
        parent = self._propagator.extract(inp.fields)
        attrs = self._attrs(inp, "attempt", inp.job)
        attrs.update({"stackshift.resumed": inp.resumed, "stackshift.queue_wait_s": inp.waited})
        if inp.resumed_by:
            attrs["stackshift.resumed_by"] = inp.resumed_by
        with self._span(f"attempt {inp.job}", attrs, parent):
            return await proceed()

    async def step(self, inp: StepInput, proceed: Proceed) -> Any:
        """One span around a step (a child of the attempt's span)."""
        with self._span(f"{inp.kind} {inp.name}", self._attrs(inp.attempt, inp.kind, inp.name)):
            return await proceed()

    def step_sync(self, inp: StepInput, proceed: Callable[[], Any]) -> Any:
        """One span around a step of a plain-function handler (its thread)."""
        with self._span(f"{inp.kind} {inp.name}", self._attrs(inp.attempt, inp.kind, inp.name)):
            return proceed()


def instrument(stackshift: Client, tracer_provider: Any = None) -> TracingHook:
    """Trace `stackshift`'s runs with `tracer_provider` (default: the global one)."""
    hook = TracingHook(tracer_provider)
    stackshift._core.hooks.add(hook)
    return hook


def auto_hook() -> TracingHook | None:
    """A TracingHook when opentelemetry-api is importable and a tracer provider has been
    configured (not the API's default proxy), else None; imports nothing when it is not
    installed or OTEL_SDK_DISABLED is true."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if importlib.util.find_spec("opentelemetry") is None:
        return None
    try:
        from opentelemetry import trace
    except ImportError:  # another opentelemetry distribution, without the API
        return None

    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return TracingHook()
