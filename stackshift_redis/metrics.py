"""Prometheus metrics (the `stackshift-redis[metrics]` extra: prometheus-client).

`register(stackshift, registry=None)` adds a `MetricsHook` to the app (counters and
histograms of what this process executes, sends and starts) and a collector that reads
the queues' gauges from Redis at scrape time (one `queue_stats` script call: two commands
per queue plus two, no scans; with partitions one more call per partition, summed).
`stackshift-worker ... --metrics-port 9100` serves the default registry.
prometheus-client is imported when `register` is called, never when this module is
imported. Labels are bounded: job, queue, step kind, event name; never a run id.
Counters count what this process did: sum them across processes in PromQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from ._attempt.parking import CancelRequested
from ._client.client import Client
from ._client.queue_view import queue_gauges
from ._client.sync import SyncStackShift
from ._core.scripts import QueueStats
from .hooks import AttemptInput, Hook, Proceed, StepInput

RUN_COUNTERS = {
    "started": "Runs whose first attempt started",
    "completed": "Runs that completed",
    "failed": "Runs that failed for good (retries spent, non-retriable, timeout)",
    "retried": "Failed attempts that were scheduled for a retry",
    "cancelled": "Running runs that stopped because they were cancelled",
    "resumed": "Attempts that resumed a run after a sleep, event or child",
}
OUTCOME_COUNTER = {
    "completed": "completed",
    "failed": "failed",
    "retry": "retried",
    "cancelled": "cancelled",
}
GAUGES = {
    "ready": "Runs ready to be taken",
    "scheduled": "Runs due later (delayed starts, retries after backoff)",
    "running": "Runs leased to a worker",
    "waiting": "Runs parked in a sleep, an event wait or a child wait",
    "unserved": "Runs queued for a job version that no live worker registers",
}


class MetricsHook(Hook):
    """Counters and histograms of attempts, steps and events, by job and queue."""

    collector: QueueCollector | None = None
    """The gauges' collector `register` added with this hook (close it to free its client)."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        jq = ["job", "queue"]
        self.runs = {
            name: Counter(f"stackshift_runs_{name}", doc, jq, registry=registry)
            for name, doc in RUN_COUNTERS.items()
        }
        steps = ["job", "queue", "kind"]
        self._steps: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self.steps_completed = Counter(
            "stackshift_steps_completed", "Steps that completed", steps, registry=registry
        )
        self.steps_failed = Counter(
            "stackshift_steps_failed", "Steps that raised", steps, registry=registry
        )
        self.events_sent = Counter(
            "stackshift_events_sent",
            "Events recorded (duplicates excluded)",
            ["event"],
            registry=registry,
        )
        self.attempt_seconds = Histogram(
            "stackshift_attempt_duration_seconds",
            "Duration of one attempt (until its outcome is recorded, or it parks the run)",
            jq,
            registry=registry,
        )
        self.step_seconds = Histogram(
            "stackshift_step_duration_seconds",
            "Duration of one step execution",
            steps,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "stackshift_queue_wait_seconds",
            "From ready to taken by a worker (server clock)",
            jq,
            registry=registry,
        )
        self.event_resume = Histogram(
            "stackshift_event_resume_latency_seconds",
            "From the event that resumed a run to its attempt starting (server clock)",
            jq,
            registry=registry,
        )

    async def attempt(self, inp: AttemptInput, proceed: Proceed) -> Any:
        """Count the start, observe the queue wait and the attempt's duration."""
        if inp.first:
            self.runs["started"].labels(inp.job, inp.queue).inc()
        if inp.resumed:
            self.runs["resumed"].labels(inp.job, inp.queue).inc()
            if inp.resumed_by == "event":
                self.event_resume.labels(inp.job, inp.queue).observe(inp.waited)
        self.queue_wait.labels(inp.job, inp.queue).observe(inp.waited)
        t0 = time.perf_counter()
        try:
            return await proceed()
        finally:
            self.attempt_seconds.labels(inp.job, inp.queue).observe(time.perf_counter() - t0)

    async def step(self, inp: StepInput, proceed: Proceed) -> Any:
        """Count and time one step."""
        t0 = time.perf_counter()
        try:
            result = await proceed()
        except CancelRequested:
            raise
        except Exception:
            self._step_done(inp, t0, True)
            raise
        self._step_done(inp, t0, False)
        return result

    def step_sync(self, inp: StepInput, proceed: Callable[[], Any]) -> Any:
        """Count and time one step of a plain-function handler."""
        t0 = time.perf_counter()
        try:
            result = proceed()
        except CancelRequested:
            raise
        except Exception:
            self._step_done(inp, t0, True)
            raise
        self._step_done(inp, t0, False)
        return result

    def _step_done(self, inp: StepInput, t0: float, failed: bool) -> None:
        key = (inp.attempt.job, inp.attempt.queue, inp.kind)
        bound = self._steps.get(key)  # the labelled children, bound once per label set
        if bound is None:
            bound = (
                self.steps_completed.labels(*key),
                self.steps_failed.labels(*key),
                self.step_seconds.labels(*key),
            )
            self._steps[key] = bound
        (bound[1] if failed else bound[0]).inc()
        bound[2].observe(time.perf_counter() - t0)

    def finished(self, inp: AttemptInput, outcome: str, error: BaseException | None) -> None:
        """Count the attempt's outcome as Redis recorded it (lost and unconfirmed count
        nothing: the run goes on elsewhere or is taken again)."""
        name = OUTCOME_COUNTER.get(outcome)
        if name is not None:
            self.runs[name].labels(inp.job, inp.queue).inc()

    def event_sent(self, name: str, resumed: list[str], started: list[str]) -> None:
        """Count a recorded event."""
        self.events_sent.labels(name).inc()


class QueueCollector:
    """Gauges per queue read from Redis at scrape time, through a client of its own (on
    the sync facade's loop thread, so it works from the exporter's thread in any process).
    Queues: those configured or used by jobs here, plus those of the published job map."""

    def __init__(self, stackshift: Client, timeout: float = 5.0) -> None:
        self._ns = stackshift._core
        self._facade = SyncStackShift(stackshift._core)
        self._timeout = timeout

    def _families(self) -> tuple[dict[str, Any], Any]:
        from prometheus_client.core import GaugeMetricFamily

        gauges = {
            name: GaugeMetricFamily(f"stackshift_queue_{name}", doc, labels=["queue"])
            for name, doc in GAUGES.items()
        }
        workers = GaugeMetricFamily(
            "stackshift_workers_alive", "Workers whose heartbeat has not expired"
        )
        return gauges, workers

    def describe(self) -> Iterator[Any]:
        """The metric families, without reading Redis (called at registration)."""
        gauges, workers = self._families()
        yield from gauges.values()
        yield workers

    def read(self) -> tuple[int, list[QueueStats]]:
        """(live workers, gauges per queue): one script call (one per partition more)."""
        reg = self._ns.registry
        queues = sorted(set(reg.queues) | {j.queue for j in reg.jobs.values()})
        return self._facade.run_with(
            lambda client: queue_gauges(client._core, queues), self._timeout
        )

    def collect(self) -> Iterator[Any]:
        """Read the gauges now (a failed read yields nothing and raises to the exporter)."""
        alive, stats = self.read()
        gauges, workers = self._families()
        for s in stats:
            for name, family in gauges.items():
                family.add_metric([s.queue], getattr(s, name))
        workers.add_metric([], alive)
        yield from gauges.values()
        yield workers

    def close(self) -> None:
        """Close the collector's Redis client and loop thread."""
        self._facade.close()


def register(stackshift: Client, registry: Any = None) -> MetricsHook:
    """Add the metrics hook to `stackshift` and its collectors to `registry` (default:
    prometheus-client's global REGISTRY). Call once per app and registry."""
    from prometheus_client import REGISTRY

    target = REGISTRY if registry is None else registry
    hook = MetricsHook(target)
    stackshift._core.hooks.add(hook)
    hook.collector = QueueCollector(stackshift)
    target.register(hook.collector)
    return hook
