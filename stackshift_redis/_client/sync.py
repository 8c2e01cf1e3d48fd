"""The synchronous facade (`app.sync`): the client surface for WSGI apps and scripts.

Calls run on a private event loop in a daemon thread, through a `Client` of their own on
the app's namespace rebound to a new Redis client (an asyncio client belongs to one loop):
registry, hooks and settings are shared, nothing is copied. In a process forked after the
facade was used, the first call notices the new pid and builds a new loop thread and client.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from .._core.namespace import Namespace, client_from_url
from .._core.output import StreamMessage
from .._core.records import Duration, RunInfo, RunPage, SendEventResult
from .client import Client
from .control import Statuses
from .handles import RunHandle
from .starting import StartOptions
from .state import SyncState

T = TypeVar("T")


_CLUSTER_OPTIONS = (
    "max_connections",
    "credential_provider",
    "username",
    "password",
    "client_name",
    "health_check_interval",
    "socket_connect_timeout",
    "socket_keepalive",
    "socket_keepalive_options",
    "socket_read_size",
    "socket_timeout",
    "protocol",
)


def _clone_cluster(client: RedisCluster) -> RedisCluster:
    """A RedisCluster to the same nodes with the same credentials, TLS and timeouts."""
    kw = client.connection_kwargs
    options = {k: kw[k] for k in _CLUSTER_OPTIONS if k in kw}
    if issubclass(kw.get("connection_class", aioredis.Connection), aioredis.SSLConnection):
        options.update({k: v for k, v in kw.items() if k.startswith("ssl_")}, ssl=True)
    manager = client.nodes_manager
    return RedisCluster(
        startup_nodes=[ClusterNode(n.host, n.port) for n in manager.startup_nodes.values()],
        require_full_coverage=manager.require_full_coverage,
        address_remap=manager.address_remap,
        **options,
    )


def clone_client(ns: Namespace) -> Any:
    """A new client to the same server(s) as the namespace's, for another event loop."""
    if ns.redis_url is not None:
        return client_from_url(ns.redis_url)
    client = ns.redis
    if isinstance(client, RedisCluster):
        return _clone_cluster(client)
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    return type(client)(
        connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    )


class SyncRunHandle:
    """A started run, with blocking status() and result()."""

    def __init__(self, facade: SyncStackShift, handle: RunHandle) -> None:
        self._facade = facade
        self._handle = handle
        self.id = handle.id
        self.deduplicated = handle.deduplicated
        self.skipped = handle.skipped

    def __repr__(self) -> str:
        return f"SyncRunHandle(id={self.id!r}, deduplicated={self.deduplicated})"

    def status(self) -> str:
        """The run's status now."""
        return self._facade._run(self._handle.status())

    def result(self, timeout: Duration | None = None) -> Any:
        """The return value once completed; RunFailed, RunCancelled or TimeoutError."""
        return self._facade._run(self._handle.result(timeout=timeout))

    def stream(self, topic: str | None = None, after: str | None = None) -> Iterator[StreamMessage]:
        """The run's output messages, blocking (see RunHandle.stream)."""
        return self._facade._iterate(self._handle.stream(topic, after))


class SyncStackShift:
    """Blocking twins of start, start_many, get_run, cancel, retry, list_runs, send_event, state."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._state: SyncState | None = None
        self._pid = os.getpid()

    def _forked(self) -> bool:
        """True in a child process forked after the facade was used (gunicorn --preload,
        multiprocessing): the loop thread did not survive fork() and the parent's
        connections must not be shared, so both are made anew, as redis-py's pools do."""
        if self._pid == os.getpid():
            return False
        self._pid = os.getpid()
        self._lock = threading.Lock()  # it may have been held by a thread at fork time
        self._loop = self._client = None
        self._state = None
        return True

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, Client]:
        self._forked()
        with self._lock:
            if self._loop is None or self._client is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="stackshift-sync", daemon=True
                ).start()
                redis = clone_client(self._ns)
                if isinstance(redis, RedisCluster):
                    # learn the slot map before concurrent first calls (from many threads):
                    # redis-py may otherwise misroute them and retry some (run twice)
                    asyncio.run_coroutine_threadsafe(redis.initialize(), loop).result(30)
                self._loop, self._client = loop, Client(self._ns.rebind(redis))
            return self._loop, self._client

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop, _ = self._ensure()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _iterate(self, agen: AsyncGenerator[T, None]) -> Iterator[T]:
        """Drive an async iterator of the facade's loop from this thread."""

        async def step() -> T:
            return await anext(agen)

        try:
            while True:
                try:
                    yield self._run(step())
                except StopAsyncIteration:
                    return
        finally:
            if self._loop is not None:
                self._run(agen.aclose())

    def run_with(self, fn: Callable[[Client], Coroutine[Any, Any, T]], timeout: float) -> T:
        """Run `fn(client)` on the facade's loop with its own client, from any thread
        (metrics read gauges this way at scrape time)."""
        loop, client = self._ensure()
        return asyncio.run_coroutine_threadsafe(fn(client), loop).result(timeout)

    @property
    def _target(self) -> Client:
        return self._ensure()[1]

    def start(
        self,
        job: str,
        payload: Any = None,
        *,
        queue_name: str | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        version: int | None = None,
        partition_key: str | None = None,
    ) -> SyncRunHandle:
        """Start a run (see StackShift.start)."""
        keys = None if idempotency_key is None else [idempotency_key]
        options = StartOptions(
            queue_name=queue_name,
            idempotency_keys=keys,
            idempotency_ttl=idempotency_ttl,
            delay=delay,
            run_at=run_at,
            priority=priority,
            version=version,
            partition_key=partition_key,
        )
        [handle] = self._run(self._target._start(job, [payload], options))
        return SyncRunHandle(self, handle)

    def start_many(
        self,
        job: str,
        payloads: Sequence[Any],
        *,
        queue_name: str | None = None,
        idempotency_keys: Sequence[str] | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        version: int | None = None,
        partition_key: str | None = None,
    ) -> list[SyncRunHandle]:
        """Start many runs (see StackShift.start_many)."""
        options = StartOptions(
            queue_name=queue_name,
            idempotency_keys=idempotency_keys,
            idempotency_ttl=idempotency_ttl,
            delay=delay,
            run_at=run_at,
            priority=priority,
            version=version,
            partition_key=partition_key,
        )
        handles = self._run(self._target._start(job, payloads, options))
        return [SyncRunHandle(self, h) for h in handles]

    def run(self, run_id: str) -> SyncRunHandle:
        """A handle for an existing run id."""
        return SyncRunHandle(self, self._target.run(run_id))

    def get_run(self, run_id: str) -> RunInfo | None:
        """The run's RunInfo, or None."""
        return self._run(self._target.get_run(run_id))

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Cancel a run (see StackShift.cancel)."""
        return self._run(self._target.cancel(run_id, reason))

    def retry(self, run_id: str) -> SyncRunHandle:
        """Queue a failed run again."""
        return SyncRunHandle(self, self._run(self._target.retry(run_id)))

    def list_runs(
        self,
        status: str | Sequence[str] | None = None,
        job: str | None = None,
        limit: int = 50,
        *,
        cursor: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> RunPage:
        """A page of runs, newest first, with `.cursor` (see StackShift.list_runs)."""
        return self._run(
            self._target.list_runs(
                status,
                job,
                limit,
                cursor=cursor,
                created_after=created_after,
                created_before=created_before,
            )
        )

    def find_run(self, job: str, idempotency_key: str) -> RunInfo | None:
        """The run an idempotency key of `job` points to, or None."""
        return self._run(self._target.find_run(job, idempotency_key))

    def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> SendEventResult:
        """Send an event (see StackShift.send_event)."""
        return self._run(self._target.send_event(name, data, id=id))

    def cancel_runs(
        self,
        *,
        job: str | None = None,
        status: Statuses = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        reason: str = "cancelled",
    ) -> int:
        """Cancel matching runs in batches (see StackShift.cancel_runs)."""
        return self._run(
            self._target.cancel_runs(
                job=job,
                status=status,
                created_after=created_after,
                created_before=created_before,
                reason=reason,
            )
        )

    def retry_runs(
        self,
        *,
        job: str | None = None,
        status: Statuses = "failed",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> int:
        """Queue matching failed (or cancelled) runs again (see StackShift.retry_runs)."""
        return self._run(
            self._target.retry_runs(
                job=job,
                status=status,
                created_after=created_after,
                created_before=created_before,
            )
        )

    def replay(self, run_id: str, from_step: str | None = None) -> SyncRunHandle:
        """A new run of the run's job and payload (see StackShift.replay)."""
        return SyncRunHandle(self, self._run(self._target.replay(run_id, from_step)))

    def pause_queue(self, name: str) -> bool:
        """Pause a queue (see StackShift.pause_queue)."""
        return self._run(self._target.pause_queue(name))

    def resume_queue(self, name: str) -> bool:
        """Resume a paused queue (see StackShift.resume_queue)."""
        return self._run(self._target.resume_queue(name))

    @property
    def state(self) -> SyncState:
        """The namespace's state store, blocking."""
        if self._state is None:
            self._state = SyncState(self._target.state, self._run)
        return self._state

    def close(self) -> None:
        """Close the facade's client and stop its loop thread."""
        if self._forked():  # the parent's loop and client are not this process's to close
            return
        with self._lock:
            loop, client = self._loop, self._client
            self._loop = self._client = None
        if loop is not None and client is not None:
            asyncio.run_coroutine_threadsafe(_close(client), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)


async def _close(client: Client) -> None:
    """Close the facade's Client and the Redis client it was given (clone_client's)."""
    redis = client._core.redis
    await client.close()
    if isinstance(redis, RedisCluster):
        await redis.aclose()
    elif not client._core.owns_client:
        await redis.aclose(close_connection_pool=True)
