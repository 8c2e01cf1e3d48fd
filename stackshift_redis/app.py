"""StackShift: the app object. A `Client` (start, inspect, control, events, state) plus the
job registry, queue settings, hooks, the sync facade and workers, composed on one core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar, overload

from ._client.client import Client
from ._client.schedules import Schedules
from ._client.sync import SyncStackShift
from ._core.flow import CancelOn, Concurrency, Debounce, RateLimit, Singleton, Throttle, make_flow
from ._core.jobs import BackoffFn, JobDef, QueueConfig, make_job, make_queue
from ._core.keys import check_name
from ._core.namespace import Namespace, Settings, check_url
from ._core.output import DEFAULT_MAX_MESSAGES
from ._core.partitions import check_partitions
from ._core.records import Duration, check_int, millis
from ._core.serializer import DEFAULT_MAX_BYTES, MsgpackSerializer, Serializer
from ._worker.worker import Worker
from .errors import InvalidArgumentError
from .hooks import Hook
from .tracing import auto_hook

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Callable[[dict[str, Any]], Any])


class StackShift(Client):
    """A namespace of jobs, runs, queues, state and events on one Redis (or Redis Cluster)."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis: Any = None,
        namespace: str = "default",
        serializer: Serializer | None = None,
        max_payload_bytes: int = DEFAULT_MAX_BYTES,
        retention: Duration = timedelta(days=7),
        idempotency_ttl: Duration = timedelta(days=1),
        event_dedupe_window: Duration = timedelta(days=1),
        event_log_window: Duration = timedelta(hours=1),
        max_deliveries: int = 5,
        partitions: int = 1,
    ) -> None:
        if redis is not None and redis_url is not None:
            raise InvalidArgumentError("pass redis_url or redis, not both")
        if redis_url is not None and not isinstance(redis_url, str):
            raise InvalidArgumentError(f"redis_url must be a str, not {redis_url!r}")
        check_int(max_deliveries, "max_deliveries", 1)
        check_int(max_payload_bytes, "max_payload_bytes", 1)
        settings = Settings(
            retention_ms=millis(retention, "retention"),
            idempotency_ttl_ms=millis(idempotency_ttl, "idempotency_ttl"),
            event_dedupe_ms=millis(event_dedupe_window, "event_dedupe_window"),
            event_log_ms=millis(event_log_window, "event_log_window"),
            max_deliveries=max_deliveries,
        )
        if settings.retention_ms < 1000:
            raise InvalidArgumentError("retention must be at least 1 second")
        url = redis_url
        if redis_url is None and redis is None:
            url = "redis://localhost:6379/0"
        if url is not None:
            check_url(url)
        check_partitions(partitions)
        ns = Namespace(
            namespace=namespace,
            partitions=partitions,
            serializer=serializer or MsgpackSerializer(max_payload_bytes),
            settings=settings,
            redis_url=url,
            redis=redis,
        )
        super().__init__(ns)
        ns.hooks.defer(auto_hook)  # tracing, when an OpenTelemetry SDK is configured
        self._sync: SyncStackShift | None = None
        self.schedules = Schedules(ns, self.run)
        """Recurring runs: create (upsert), pause, resume, trigger, delete, get, list."""

    def __repr__(self) -> str:
        return f"StackShift(namespace={self.namespace!r})"

    # the core, as attributes
    @property
    def namespace(self) -> str:
        """The namespace name."""
        return self._core.namespace

    @property
    def redis(self) -> Any:
        """The redis.asyncio client (created on first use from redis_url)."""
        return self._core.redis

    @property
    def redis_url(self) -> str | None:
        """The URL the client is made from (None when a client was passed)."""
        return self._core.redis_url

    @property
    def serializer(self) -> Serializer:
        """Turns payloads, results and state values into bytes and back."""
        return self._core.serializer

    @property
    def retention_ms(self) -> int:
        """How long finished runs are kept, in ms."""
        return self._core.settings.retention_ms

    @property
    def max_deliveries(self) -> int:
        """Deliveries without finishing after which a run fails as poison."""
        return self._core.settings.max_deliveries

    @property
    def jobs(self) -> dict[str, JobDef]:
        """The jobs registered in this process."""
        return self._core.registry.jobs

    @property
    def queues(self) -> dict[str, QueueConfig]:
        """The queues configured in this process."""
        return self._core.registry.queues

    def use_redis_url(self, redis_url: str) -> None:
        """Point the app at another Redis (before first use; the CLI's --redis-url)."""
        self._core.use_redis_url(check_url(redis_url))

    async def close(self) -> None:
        """Stop background readers and close the client this app created."""
        if self._sync is not None:
            self._sync.close()
        await super().close()

    # registry
    @overload
    def job(
        self,
        name: str,
        fn: F,
        *,
        queue: str = ...,
        retries: int = ...,
        backoff: BackoffFn | Duration | None = ...,
        timeout: Duration | None = ...,
        on_event: str | None = ...,
        idempotency_ttl: Duration | None = ...,
        on_failure: str | None = ...,
        cron: str | None = ...,
        timezone: str | None = ...,
        concurrency: Concurrency | Sequence[Concurrency] | None = ...,
        throttle: Throttle | None = ...,
        rate_limit: RateLimit | None = ...,
        debounce: Debounce | None = ...,
        singleton: Singleton | None = ...,
        cancel_on: CancelOn | Sequence[CancelOn] | None = ...,
        priority: int = ...,
        max_stream_messages: int = ...,
        version: int = ...,
    ) -> F: ...
    @overload
    def job(
        self,
        name: str,
        fn: None = ...,
        *,
        queue: str = ...,
        retries: int = ...,
        backoff: BackoffFn | Duration | None = ...,
        timeout: Duration | None = ...,
        on_event: str | None = ...,
        idempotency_ttl: Duration | None = ...,
        on_failure: str | None = ...,
        cron: str | None = ...,
        timezone: str | None = ...,
        concurrency: Concurrency | Sequence[Concurrency] | None = ...,
        throttle: Throttle | None = ...,
        rate_limit: RateLimit | None = ...,
        debounce: Debounce | None = ...,
        singleton: Singleton | None = ...,
        cancel_on: CancelOn | Sequence[CancelOn] | None = ...,
        priority: int = ...,
        max_stream_messages: int = ...,
        version: int = ...,
    ) -> Callable[[F], F]: ...
    def job(
        self,
        name: str,
        fn: F | None = None,
        *,
        queue: str = "default",
        retries: int = 3,
        backoff: BackoffFn | Duration | None = None,
        timeout: Duration | None = None,
        on_event: str | None = None,
        idempotency_ttl: Duration | None = None,
        on_failure: str | None = None,
        cron: str | None = None,
        timezone: str | None = None,
        concurrency: Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        singleton: Singleton | None = None,
        cancel_on: CancelOn | Sequence[CancelOn] | None = None,
        priority: int = 0,
        max_stream_messages: int = DEFAULT_MAX_MESSAGES,
        version: int = 1,
    ) -> F | Callable[[F], F]:
        """Register a job: `@app.job("name", queue=...)` or `app.job("name", fn)`.
        `cron=` (with `timezone=`, default UTC) adds a schedule named after the job, created
        or updated by each worker that registers the job when it starts.
        `on_failure="job"`: each run that fails for good starts one run of that job with
        {"run_id", "job", "payload", "error": {"type", "message"}} (needs the default
        msgpack serializer: the payload is built inside the failing script). Flow control
        (concurrency, throttle, rate_limit, debounce, singleton, cancel_on, priority): see
        stackshift_redis._core.flow and the README, "Flow control".
        `max_stream_messages` caps each run's output stream (`ctx.publish`): the oldest
        messages are dropped beyond it.
        `version` (int >= 1): runs are pinned to a version when created and execute only
        on workers that register it; register several versions of one job to keep old code
        while old runs finish (README, "Deploying changes"). Workers publish the highest
        version's rules to Redis, and every caller applies them."""
        if on_failure is not None and not isinstance(self._core.serializer, MsgpackSerializer):
            raise InvalidArgumentError(f"job {name!r}: on_failure needs the msgpack serializer")
        flow = make_flow(concurrency, throttle, rate_limit, debounce, singleton, cancel_on)

        def register(func: F) -> F:
            self._core.registry.add_job(
                make_job(
                    name,
                    func,
                    queue=queue,
                    retries=retries,
                    backoff=backoff,
                    timeout=timeout,
                    on_event=on_event,
                    idempotency_ttl=idempotency_ttl,
                    on_failure=on_failure,
                    cron=cron,
                    timezone=timezone,
                    flow=flow,
                    priority=priority,
                    max_stream_messages=max_stream_messages,
                    version=version,
                )
            )
            return func

        return register(fn) if fn is not None else register

    def queue(
        self, name: str, concurrency: int | None = None, visibility_timeout: Duration = 30
    ) -> QueueConfig:
        """Configure a queue: global concurrency limit and claim visibility timeout."""
        conf = make_queue(name, concurrency, visibility_timeout)
        self._core.registry.queues[name] = conf
        return conf

    def queue_config(self, name: str) -> QueueConfig:
        """The queue's settings (defaults when not configured here)."""
        return self._core.registry.queue(name)

    def on_startup(self, fn: H) -> H:
        """Register a worker startup hook `fn(resources)` (async or plain): it runs once per
        worker before the first claim and may put shared objects in `resources`, which
        handlers reach as `ctx.resources`. If it raises, the worker stops (nothing claimed)."""
        if not callable(fn):
            raise InvalidArgumentError(f"on_startup needs a callable, not {fn!r}")
        self._core.registry.startup.append(fn)
        return fn

    def on_shutdown(self, fn: H) -> H:
        """Register a worker shutdown hook `fn(resources)` (async or plain): it runs once,
        after the last attempt finished or was handed back."""
        if not callable(fn):
            raise InvalidArgumentError(f"on_shutdown needs a callable, not {fn!r}")
        self._core.registry.shutdown.append(fn)
        return fn

    async def unregister_job(self, name: str) -> int:
        """Forget `name` in the shared job map and triggers now (after a rename or a move;
        stop the workers that register it first, or their next heartbeat publishes it
        again). Entries no live worker registers are also dropped by themselves within
        about 20 seconds. Its published definition is removed too (the last one stays in
        force while no worker of the job is live, until this). Returns the number of job
        map and trigger entries removed."""
        removed = await self._core.scripts.unregister_job(check_name("job", name))
        self._core.definitions.clear()
        return removed

    def add_hook(self, hook: Hook) -> None:
        """Add a hook around attempts and steps (metrics, tracing: see hooks.py)."""
        self._core.hooks.add(hook)

    @property
    def sync(self) -> SyncStackShift:
        """The same client surface, synchronous (for WSGI apps and scripts)."""
        if self._sync is None:
            self._sync = SyncStackShift(self._core)
        return self._sync

    def worker(
        self, queues: Sequence[str] | None = None, concurrency: int = 10, **options: Any
    ) -> Worker:
        """A worker for `queues` (default: every queue of the registered jobs)."""
        return Worker(self._core, queues=queues, concurrency=concurrency, **options)
