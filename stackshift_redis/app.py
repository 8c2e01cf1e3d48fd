"""StackShift: the app object (job registry, starting runs, inspecting and controlling them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

import redis.asyncio as aioredis

from .coalesce import StartCoalescer
from .errors import InvalidArgumentError, StackShiftError, UnknownJobError
from .jobs import BackoffFn, JobDef, make_job
from .keys import STATUSES, Keys, check_name
from .records import Duration, RunInfo, epoch_ms, millis, new_run_id, parse_run, seconds
from .runs import ResultWaiter, RunHandle
from .scripts import Scripts
from .serializer import DEFAULT_MAX_BYTES, MsgpackSerializer, Serializer

if TYPE_CHECKING:
    from .events import EventBus
    from .records import SendEventResult
    from .state import State
    from .sync import SyncStackShift
    from .worker import Worker

F = TypeVar("F", bound=Callable[..., Any])
DAY = 86400.0
MAX_IDEMPOTENCY_KEY = 512


def client_from_url(url: str, max_connections: int = 64) -> Any:
    """An asyncio client whose pool waits for a free connection instead of failing."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=None
    )
    return aioredis.Redis(connection_pool=pool)


class QueueConfig:
    """Settings of one queue, published to Redis by workers so every process agrees."""

    def __init__(self, name: str, concurrency: int | None, visibility_timeout: float) -> None:
        self.name = name
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout


class StackShift:
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
    ) -> None:
        if redis is not None and redis_url is not None:
            raise InvalidArgumentError("pass redis_url or redis, not both")
        self.keys = Keys(namespace)
        self.namespace = namespace
        self.redis_url = redis_url or ("redis://localhost:6379/0" if redis is None else None)
        self._redis = redis
        self.serializer: Serializer = serializer or MsgpackSerializer(max_payload_bytes)
        self.retention_ms = millis(retention, "retention")
        if self.retention_ms < 1000:
            raise InvalidArgumentError("retention must be at least 1 second")
        self.idempotency_ttl_ms = millis(idempotency_ttl, "idempotency_ttl")
        self.event_dedupe_ms = millis(event_dedupe_window, "event_dedupe_window")
        self.event_log_ms = millis(event_log_window, "event_log_window")
        self.max_deliveries = max_deliveries
        self.jobs: dict[str, JobDef] = {}
        self.queues: dict[str, QueueConfig] = {}
        self._scripts: Scripts | None = None
        self._waiter = ResultWaiter(self)
        self._coalescer = StartCoalescer(self)
        self._queue_cache: dict[str, str] = {}
        self._state: State | None = None
        self._events: EventBus | None = None
        self._sync: SyncStackShift | None = None

    def __repr__(self) -> str:
        return f"StackShift(namespace={self.namespace!r})"

    # connection
    @property
    def redis(self) -> Any:
        """The redis.asyncio client (created on first use from redis_url)."""
        if self._redis is None:
            assert self.redis_url is not None
            self._redis = client_from_url(self.redis_url)
        return self._redis

    @property
    def scripts(self) -> Scripts:
        """The Lua scripts bound to this app's client and namespace."""
        if self._scripts is None:
            self._scripts = Scripts(self.redis, self.keys)
        return self._scripts

    def use_redis_url(self, redis_url: str) -> None:
        """Point the app at another Redis (before first use; the CLI's --redis-url)."""
        self.redis_url, self._redis, self._scripts = redis_url, None, None

    async def close(self) -> None:
        """Stop background readers and close the client this app created."""
        if self._sync is not None:
            self._sync.close()
        await self._waiter.close()
        if self._redis is not None and self.redis_url is not None:
            await self._redis.aclose(close_connection_pool=True)
            self._redis = None
            self._scripts = None

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
    ) -> F | Callable[[F], F]:
        """Register a job: `@app.job("name", queue=...)` or `app.job("name", fn)`."""

        def register(func: F) -> F:
            if name in self.jobs:
                raise InvalidArgumentError(f"job {name!r} is already registered")
            self.jobs[name] = make_job(
                name,
                func,
                queue=queue,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                on_event=on_event,
                idempotency_ttl=idempotency_ttl,
            )
            return func

        return register(fn) if fn is not None else register

    def queue(
        self, name: str, concurrency: int | None = None, visibility_timeout: Duration = 30
    ) -> QueueConfig:
        """Configure a queue: global concurrency limit and claim visibility timeout."""
        check_name("queue", name)
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise InvalidArgumentError("concurrency must be a positive int or None")
        vt = seconds(visibility_timeout, "visibility_timeout")
        if vt < 1:
            raise InvalidArgumentError("visibility_timeout must be at least 1 second")
        self.queues[name] = QueueConfig(name, concurrency, vt)
        return self.queues[name]

    def queue_config(self, name: str) -> QueueConfig:
        """The queue's settings (defaults when not configured here)."""
        return self.queues.get(name) or QueueConfig(name, None, 30.0)

    async def _queue_for(self, job: str, queue_name: str | None) -> str:
        if queue_name is not None:
            return check_name("queue", queue_name)
        if job in self.jobs:
            return self.jobs[job].queue
        if job not in self._queue_cache:
            queue = await self.redis.hget(self.keys.jobs(), job)
            if queue is None:
                raise UnknownJobError(f"job {job!r} is not registered and no queue is known")
            self._queue_cache[job] = queue.decode()
        return self._queue_cache[job]

    # starting runs
    async def start(
        self,
        job: str,
        payload: Any = None,
        *,
        queue_name: str | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
    ) -> RunHandle:
        """Start a run of `job`; with an idempotency key, duplicates return the same run."""
        runs = await self.start_many(
            job,
            [payload],
            queue_name=queue_name,
            idempotency_keys=None if idempotency_key is None else [idempotency_key],
            idempotency_ttl=idempotency_ttl,
            delay=delay,
            run_at=run_at,
        )
        return runs[0]

    async def start_many(
        self,
        job: str,
        payloads: Sequence[Any],
        *,
        queue_name: str | None = None,
        idempotency_keys: Sequence[str] | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        _extra: dict[str, str] | None = None,
    ) -> list[RunHandle]:
        """Start many runs of `job` in few round trips; same rules per run as `start`."""
        check_name("job", job)
        if isinstance(payloads, (str, bytes, dict)):
            raise InvalidArgumentError("payloads must be a sequence of payloads")
        if idempotency_keys is not None and len(idempotency_keys) != len(payloads):
            raise InvalidArgumentError("idempotency_keys needs one key per payload")
        for key in idempotency_keys or ():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
                raise InvalidArgumentError(f"invalid idempotency key {key!r}")
        if delay is not None and run_at is not None:
            raise InvalidArgumentError("pass delay or run_at, not both")
        delay_ms = millis(delay, "delay") if delay is not None else 0
        if run_at is not None and not isinstance(run_at, datetime):
            raise InvalidArgumentError("run_at must be a datetime")
        at_ms = epoch_ms(run_at) if run_at is not None else 0
        ttl_ms = self._idem_ttl_ms(job, idempotency_ttl)
        encoded = [self.serializer.dumps(p) for p in payloads]
        queue = await self._queue_for(job, queue_name)
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(encoded)
        extra = json.dumps(_extra) if _extra else ""
        out: list[RunHandle] = []
        if len(encoded) == 1:  # a single start: coalesced with concurrent ones
            group = (job, queue, delay_ms, at_ms, ttl_ms, extra)
            run_id, dedup = await self._coalescer.start(group, (new_run_id(), keys[0], encoded[0]))
            return [RunHandle(self, run_id, dedup)]
        for lo in range(0, len(encoded), 500):
            hi = min(lo + 500, len(encoded))
            batch = [(new_run_id(), keys[i], encoded[i]) for i in range(lo, hi)]
            replies = await self.scripts.start(
                job, queue, batch, delay_ms=delay_ms, at_ms=at_ms, idem_ttl_ms=ttl_ms, extra=extra
            )
            out += [RunHandle(self, run_id, dedup) for run_id, dedup in replies]
        return out

    def _idem_ttl_ms(self, job: str, override: Duration | None) -> int:
        if override is not None:
            return max(1, millis(override, "idempotency_ttl"))
        jd = self.jobs.get(job)
        if jd is not None and jd.idempotency_ttl is not None:
            return max(1, round(jd.idempotency_ttl * 1000))
        return self.idempotency_ttl_ms

    # inspect and control
    def run(self, run_id: str) -> RunHandle:
        """A handle for an existing run id."""
        return RunHandle(self, run_id)

    async def get_run(self, run_id: str) -> RunInfo | None:
        """The run's RunInfo, or None when unknown or expired."""
        h = await self.redis.hgetall(self.keys.run(run_id))
        return parse_run(run_id, h, self.serializer) if h else None

    async def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Cancel a run: waiting/queued at once, running at its next step. False if final."""
        reply = await self.scripts.cancel(run_id, reason, self.retention_ms)
        return reply is not None and reply[1]

    async def retry(self, run_id: str) -> RunHandle:
        """Queue a failed run again; its completed steps are reused."""
        if not await self.scripts.retry(run_id):
            raise StackShiftError(f"no run {run_id}")
        return RunHandle(self, run_id)

    async def list_runs(
        self, status: str | None = None, job: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        """Runs from the status indexes, most recently changed first."""
        if status is not None and status not in STATUSES:
            raise InvalidArgumentError(f"unknown status {status!r}")
        if job is not None:
            check_name("job", job)
        statuses = [status] if status else list(STATUSES)
        k = self.keys
        idx = [k.idx_job_status(job, s) if job else k.idx_status(s) for s in statuses]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in idx:
                pipe.zrevrange(key, 0, limit - 1, withscores=True)
            ranges = await pipe.execute()
        scored = sorted((pair for r in ranges for pair in r), key=lambda p: p[1], reverse=True)
        ids = [m.decode() for m, _ in scored[:limit]]
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hgetall(k.run(run_id))
            hashes = await pipe.execute()
        return [parse_run(i, h, self.serializer) for i, h in zip(ids, hashes, strict=True) if h]

    # the other parts of the surface
    async def send_event(
        self, name: str, data: Any = None, *, id: str | None = None
    ) -> SendEventResult:
        """Record an event: resume runs waiting for it and start its on_event jobs."""
        return await self.events.send(name, data, event_id=id)

    @property
    def events(self) -> EventBus:
        """Event sending and correlation."""
        if self._events is None:
            from .events import EventBus

            self._events = EventBus(self)
        return self._events

    @property
    def state(self) -> State:
        """Durable values of this namespace: set/get/incr/mark/lock."""
        if self._state is None:
            from .state import State

            self._state = State(self)
        return self._state

    @property
    def sync(self) -> SyncStackShift:
        """The same client surface, synchronous (for WSGI apps and scripts)."""
        if self._sync is None:
            from .sync import SyncStackShift

            self._sync = SyncStackShift(self)
        return self._sync

    def worker(
        self, queues: Sequence[str] | None = None, concurrency: int = 10, **options: Any
    ) -> Worker:
        """A worker for `queues` (default: every queue of the registered jobs)."""
        from .worker import Worker

        return Worker(self, queues=queues, concurrency=concurrency, **options)
