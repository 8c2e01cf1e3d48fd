"""The synchronous facade (`app.sync`): the client surface for WSGI apps and scripts.

Calls run on a private event loop in a daemon thread, with a client of their own (an
asyncio client belongs to one loop), sharing the app's registry and settings.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from .app import client_from_url
from .coalesce import StartCoalescer
from .records import Duration, RunInfo, SendEventResult
from .runs import ResultWaiter, RunHandle

if TYPE_CHECKING:
    from .app import StackShift
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


def clone_client(app: StackShift) -> Any:
    """A new client to the same server(s) as the app's, for use on another event loop."""
    if app.redis_url is not None:
        return client_from_url(app.redis_url)
    client = app.redis
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

    def __repr__(self) -> str:
        return f"SyncRunHandle(id={self.id!r}, deduplicated={self.deduplicated})"

    def status(self) -> str:
        """The run's status now."""
        return self._facade._run(self._handle.status())

    def result(self, timeout: Duration | None = None) -> Any:
        """The return value once completed; RunFailed, RunCancelled or TimeoutError."""
        return self._facade._run(self._handle.result(timeout=timeout))


class SyncStackShift:
    """Blocking twins of start, start_many, get_run, cancel, retry, list_runs, send_event, state."""

    def __init__(self, app: StackShift) -> None:
        self._app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clone: StackShift | None = None
        self._lock = threading.Lock()
        self._state: SyncState | None = None

    def _ensure(self) -> tuple[asyncio.AbstractEventLoop, StackShift]:
        with self._lock:
            if self._loop is None or self._clone is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="stackshift-sync", daemon=True
                ).start()
                clone = copy.copy(self._app)  # shares jobs, queues and settings
                client = clone_client(self._app)
                if isinstance(client, RedisCluster):
                    # learn the slot map before concurrent first calls (from many threads):
                    # redis-py may otherwise misroute them and retry some (run twice)
                    asyncio.run_coroutine_threadsafe(client.initialize(), loop).result(30)
                clone._redis, clone._scripts, clone.redis_url = client, None, None
                clone._state = clone._events = clone._sync = None
                clone._waiter = ResultWaiter(clone)
                clone._coalescer = StartCoalescer(clone)
                self._loop, self._clone = loop, clone
            return self._loop, self._clone

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop, _ = self._ensure()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    @property
    def _target(self) -> StackShift:
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
    ) -> SyncRunHandle:
        """Start a run (see StackShift.start)."""
        handle = self._run(
            self._target.start(
                job,
                payload,
                queue_name=queue_name,
                idempotency_key=idempotency_key,
                idempotency_ttl=idempotency_ttl,
                delay=delay,
                run_at=run_at,
            )
        )
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
    ) -> list[SyncRunHandle]:
        """Start many runs (see StackShift.start_many)."""
        handles = self._run(
            self._target.start_many(
                job,
                payloads,
                queue_name=queue_name,
                idempotency_keys=idempotency_keys,
                idempotency_ttl=idempotency_ttl,
                delay=delay,
                run_at=run_at,
            )
        )
        return [SyncRunHandle(self, h) for h in handles]

    def run(self, run_id: str) -> SyncRunHandle:
        """A handle for an existing run id."""
        return SyncRunHandle(self, RunHandle(self._target, run_id))

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
        self, status: str | None = None, job: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        """Runs from the status indexes, most recently changed first."""
        return self._run(self._target.list_runs(status=status, job=job, limit=limit))

    def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> SendEventResult:
        """Send an event (see StackShift.send_event)."""
        return self._run(self._target.send_event(name, data, id=id))

    @property
    def state(self) -> SyncState:
        """The namespace's state store, blocking."""
        if self._state is None:
            from .state import SyncState

            self._state = SyncState(self._target.state, self._run)
        return self._state

    def close(self) -> None:
        """Close the facade's client and stop its loop thread."""
        with self._lock:
            loop, clone = self._loop, self._clone
            self._loop = self._clone = None
        if loop is not None and clone is not None:
            asyncio.run_coroutine_threadsafe(_close_clone(clone), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)


async def _close_clone(clone: StackShift) -> None:
    """Close the facade's app copy and the client it was given (clone_client's)."""
    client = clone._redis
    await clone.close()
    if isinstance(client, RedisCluster):
        await client.aclose()
    elif client is not None:
        await client.aclose(close_connection_pool=True)
