"""The registry: job definitions behind `@app.job(...)`, queue settings, retry backoff."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError
from .cron import make_cadence
from .flow import Flow, check_priority
from .keys import check_name
from .output import DEFAULT_MAX_MESSAGES, check_max_messages
from .records import Duration, seconds

BackoffFn = Callable[[int], float]
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0


def default_backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: base 1 s doubling per attempt, capped at 5 min."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def make_backoff(backoff: BackoffFn | Duration | None) -> BackoffFn:
    """A backoff function from a callable(attempt) -> seconds, a fixed duration, or None."""
    if backoff is None:
        return default_backoff
    if callable(backoff):
        return backoff
    fixed = seconds(backoff, "backoff")
    return lambda _attempt: fixed


@dataclass(frozen=True)
class JobDef:
    """A registered job: its handler and execution policy."""

    name: str
    fn: Callable[..., Any]
    queue: str
    retries: int
    backoff: BackoffFn
    timeout: float | None
    on_event: str | None
    idempotency_ttl: float | None
    on_failure: str | None = None  # the job its runs start when they fail for good
    cron: str | None = None  # a schedule named after the job (upserted by workers)
    timezone: str | None = None  # the cron's IANA time zone (default UTC)
    flow: Flow = field(default_factory=Flow)
    priority: int = 0
    max_stream_messages: int = DEFAULT_MAX_MESSAGES  # output stream cap per run (publish)
    version: int = 1  # runs pinned to this version execute this handler
    backoff_kind: str = "default"  # as published: default | fixed <s> | callable

    @property
    def is_async(self) -> bool:
        """True when the handler is a coroutine function."""
        return inspect.iscoroutinefunction(self.fn)


def make_job(
    name: str,
    fn: Callable[..., Any],
    *,
    queue: str,
    retries: int,
    backoff: BackoffFn | Duration | None,
    timeout: Duration | None,
    on_event: str | None,
    idempotency_ttl: Duration | None,
    on_failure: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    flow: Flow | None = None,
    priority: int = 0,
    max_stream_messages: int = DEFAULT_MAX_MESSAGES,
    version: int = 1,
) -> JobDef:
    """Validate options and build a JobDef."""
    check_name("job", name)
    check_name("queue", queue)
    if on_event is not None:
        check_name("event", on_event)
    if on_failure is not None:
        check_name("on_failure job", on_failure)
        if on_failure == name:
            raise InvalidArgumentError(f"job {name!r}: on_failure must name another job")
    if not callable(fn):
        raise InvalidArgumentError(f"job {name!r}: handler {fn!r} is not callable")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InvalidArgumentError(f"job {name!r}: retries must be an int >= 0")
    if timeout is not None and seconds(timeout, "timeout") <= 0:
        raise InvalidArgumentError(f"job {name!r}: timeout must be positive (None: no limit)")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidArgumentError(f"job {name!r}: version must be an int >= 1, not {version!r}")
    if cron is not None:
        cron = make_cadence(cron, None, timezone).cron
    elif timezone is not None:
        raise InvalidArgumentError(f"job {name!r}: timezone= needs cron=")
    return JobDef(
        name=name,
        fn=fn,
        queue=queue,
        retries=retries,
        backoff=make_backoff(backoff),
        timeout=seconds(timeout, "timeout") if timeout is not None else None,
        on_event=on_event,
        idempotency_ttl=(
            seconds(idempotency_ttl, "idempotency_ttl") if idempotency_ttl is not None else None
        ),
        on_failure=on_failure,
        cron=cron,
        timezone=timezone,
        flow=flow if flow is not None else Flow(),
        priority=check_priority(priority),
        max_stream_messages=check_max_messages(max_stream_messages, name),
        version=version,
        backoff_kind=_backoff_kind(backoff),
    )


def _backoff_kind(backoff: BackoffFn | Duration | None) -> str:
    if backoff is None:
        return "default"
    if callable(backoff):
        return "callable"
    return f"fixed {seconds(backoff, 'backoff'):g}s"


@dataclass
class QueueConfig:
    """Settings of one queue, published to Redis by workers so every process agrees."""

    name: str
    concurrency: int | None = None
    visibility_timeout: float = 30.0


def make_queue(name: str, concurrency: int | None, visibility_timeout: Duration) -> QueueConfig:
    """Validate queue options and build a QueueConfig."""
    check_name("queue", name)
    if concurrency is not None and (
        not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 0
    ):
        raise InvalidArgumentError("concurrency must be an int >= 0 (0: no limit) or None")
    vt = seconds(visibility_timeout, "visibility_timeout")
    if vt < 1:
        raise InvalidArgumentError("visibility_timeout must be at least 1 second")
    return QueueConfig(name, concurrency, vt)


@dataclass
class Registry:
    """The jobs and queues this process knows (shared by the app, its sync facade and its
    workers)."""

    jobs: dict[str, JobDef] = field(default_factory=dict)  # each job's highest version
    versions: dict[str, dict[int, JobDef]] = field(default_factory=dict)  # job -> version -> def
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    startup: list[Callable[[dict[str, Any]], Any]] = field(default_factory=list)
    shutdown: list[Callable[[dict[str, Any]], Any]] = field(default_factory=list)

    def add_job(self, job: JobDef) -> None:
        """Register a job version; InvalidArgumentError when that name and version is taken.
        `jobs[name]` is the highest version (its rules are the job's)."""
        versions = self.versions.setdefault(job.name, {})
        if job.version in versions:
            raise InvalidArgumentError(
                f"job {job.name!r} is already registered"
                + (f" with version {job.version}" if versions and job.version != 1 else "")
            )
        versions[job.version] = job
        self.jobs[job.name] = versions[max(versions)]

    def handler(self, job: str, version: int) -> JobDef | None:
        """The definition that executes runs of `job` pinned to `version`, or None."""
        return self.versions.get(job, {}).get(version)

    def queue(self, name: str) -> QueueConfig:
        """The queue's settings (defaults when not configured here)."""
        return self.queues.get(name) or QueueConfig(name)

    def triggers(self, event: str) -> dict[str, str]:
        """{job: queue} of the jobs this process starts on `event`."""
        return {j.name: j.queue for j in self.jobs.values() if j.on_event == event}
