"""The core of a namespace: client, keys, scripts, serializer, settings, registry, hooks.

Every module below the app takes a `Namespace`, never the app. `StackShift` (app.py)
composes the services on top of one; the sync facade rebinds the same namespace to a
client of its own loop (`Namespace.rebind`), sharing the registry and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import InvalidArgumentError, UnknownJobError
from ..hooks import Hooks
from .definitions import Definitions
from .jobs import Registry
from .keys import Keys, check_name
from .layout import Layout
from .partitions import check_partitions, name_route, partition_of, partition_tags
from .records import new_run_id
from .scripts import Scripts, redis_call
from .serializer import Serializer


@dataclass(frozen=True)
class Settings:
    """Namespace-wide settings, in milliseconds (validated by the app)."""

    retention_ms: int
    idempotency_ttl_ms: int
    event_dedupe_ms: int
    event_log_ms: int
    max_deliveries: int


def check_url(url: object) -> str:
    """A Redis URL redis-py accepts (redis://, rediss://, unix://, a numeric port, a db
    number), else InvalidArgumentError naming it; nothing is connected."""
    if not isinstance(url, str) or not url:
        raise InvalidArgumentError(f"invalid redis_url {url!r}: expected redis://host:port/db")
    try:
        parse_url(url)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"invalid redis_url {url!r}: {exc}") from None
    parts = urlsplit(url)
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():  # redis-py would ignore it
        raise InvalidArgumentError(f"invalid redis_url {url!r}: database {db!r} is not a number")
    return url


CLIENT_RETRIES = 5


def client_retry() -> Retry:
    """How the library's own client re-sends a command whose connection failed: 5 more
    times with jittered backoff (50 ms doubling, capped at 1 s). Every script is safe to
    re-send: see README "What is promised"."""
    return Retry(
        ExponentialWithJitterBackoff(base=0.05, cap=1.0),
        CLIENT_RETRIES,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def client_from_url(url: str, max_connections: int = 64) -> Any:
    """An asyncio client whose pool waits for a free connection instead of failing, and
    that re-sends commands after connection errors (`client_retry`)."""
    if not isinstance(url, str):
        raise InvalidArgumentError(f"redis_url must be a str, not {url!r}")
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=None, retry=client_retry()
        )
    except ValueError as exc:
        raise InvalidArgumentError(f"invalid redis_url {url!r}: {exc}") from None
    return aioredis.Redis(connection_pool=pool)


class Namespace:
    """One namespace on one Redis client: what every lower module works with."""

    def __init__(
        self,
        *,
        namespace: str,
        serializer: Serializer,
        settings: Settings,
        registry: Registry | None = None,
        hooks: Hooks | None = None,
        redis_url: str | None = None,
        redis: Any = None,
        partitions: int = 1,
    ) -> None:
        self.keys = Keys(namespace)  # the namespace-wide keys (all keys when partitions = 1)
        self.partitions = check_partitions(partitions)
        tags = partition_tags(namespace, self.partitions)
        self.part_keys = [self.keys] if self.partitions == 1 else [Keys(namespace, t) for t in tags]
        self._part_scripts: list[Scripts] | None = None
        self.namespace = namespace
        self.serializer = serializer
        self.settings = settings
        self.registry = registry if registry is not None else Registry()
        self.hooks = hooks if hooks is not None else Hooks()
        self.redis_url = redis_url
        self._redis = redis
        self._scripts: Scripts | None = None
        self.layout = Layout(self)
        self.virtual_clock = False  # TestEnv only: scripts read the time from keys.clock()
        self.settle: Any = None  # TestEnv only: result() runs the clock until the run is final
        self._queue_cache: dict[str, str] = {}
        self.definitions = Definitions(self)  # the published job definitions (cached)

    @property
    def redis(self) -> Any:
        """The redis.asyncio client (created on first use from redis_url)."""
        if self._redis is None:
            assert self.redis_url is not None
            self._redis = client_from_url(self.redis_url)
        return self._redis

    @property
    def owns_client(self) -> bool:
        """True when the client was made here from a URL (and is closed here)."""
        return self.redis_url is not None

    @property
    def scripts(self) -> Scripts:
        """The Lua scripts bound to this client and namespace."""
        if self._scripts is None:
            self._scripts = Scripts(
                self.redis, self.keys, virtual_clock=self.virtual_clock, gate=self.layout.gate
            )
        return self._scripts

    def part_scripts(self, part: int) -> Scripts:
        """The scripts bound to partition `part`'s keys (`scripts` itself for P = 1)."""
        if self.partitions == 1:
            return self.scripts
        if self._part_scripts is None:
            self._part_scripts = [
                Scripts(self.redis, k, virtual_clock=self.virtual_clock, gate=self.layout.gate)
                for k in self.part_keys
            ]
        return self._part_scripts[part]

    def part_of(self, run_id: str) -> int:
        """The partition of a run (0 when the namespace has one)."""
        return partition_of(run_id, self.partitions)

    def keys_of(self, run_id: str) -> Keys:
        """The keys of the partition a run lives on."""
        return self.part_keys[partition_of(run_id, self.partitions)]

    def scripts_of(self, run_id: str) -> Scripts:
        """The scripts bound to the partition a run lives on."""
        return self.part_scripts(partition_of(run_id, self.partitions))

    def new_run_id(self, part: int = 0) -> str:
        """A new run id on partition `part` (it carries the partition when P > 1)."""
        return new_run_id(part if self.partitions > 1 else None)

    def part_of_name(self, name: str) -> int:
        """The partition of a state value or lock (partitions.name_route)."""
        return name_route(name, self.partitions) if self.partitions > 1 else 0

    def name_keys(self, name: str) -> Keys:
        """The keys of the partition of a state value or lock (by its name)."""
        return self.part_keys[self.part_of_name(name)]

    def name_scripts(self, name: str) -> Scripts:
        """The scripts of the partition of a state value or lock (by its name)."""
        return self.part_scripts(self.part_of_name(name))

    def use_redis_url(self, redis_url: str) -> None:
        """Point at another Redis (before first use; the CLI's --redis-url)."""
        self.redis_url, self._redis, self._scripts = redis_url, None, None
        self._part_scripts = None
        self.layout = Layout(self)
        self.definitions.clear()

    def swap_client(
        self, redis: Any, *, redis_url: str | None = None, virtual_clock: bool = False
    ) -> tuple[Any, str | None, bool]:
        """Point this namespace at another client (TestEnv puts in-process fakeredis in, with
        `virtual_clock`: scripts read the time from keys.clock()); returns the previous
        (client, redis_url, virtual_clock) to swap back with."""
        previous = (self._redis, self.redis_url, self.virtual_clock)
        self._redis, self.redis_url, self.virtual_clock = redis, redis_url, virtual_clock
        self._scripts = self._part_scripts = None
        self.layout = Layout(self)
        self._queue_cache.clear()
        self.definitions.clear()
        return previous

    def rebind(self, redis: Any) -> Namespace:
        """The same namespace, registry, hooks and settings on another client."""
        ns = Namespace(
            namespace=self.namespace,
            serializer=self.serializer,
            settings=self.settings,
            registry=self.registry,
            hooks=self.hooks,
            redis=redis,
            partitions=self.partitions,
        )
        ns.virtual_clock = self.virtual_clock
        return ns

    async def aclose(self) -> None:
        """Close the client if this namespace created it."""
        if self._redis is not None and self.owns_client:
            await self._redis.aclose(close_connection_pool=True)
            self._redis = None
            self._scripts = self._part_scripts = None

    @redis_call
    async def queue_for(self, job: str, queue_name: str | None = None) -> str:
        """The queue of `job`: given, published in its definition, registered here, or in
        the job map of live workers."""
        if queue_name is not None:
            return check_name("queue", queue_name)
        await self.definitions.load()
        published = self.definitions.data.get(job)
        if published is not None:
            return str(published["queue"])
        known = self.registry.jobs.get(job)
        if known is not None:
            return known.queue
        if job not in self._queue_cache:
            queue = await self.redis.hget(self.keys.jobs(), job)
            if queue is None:
                raise UnknownJobError(f"job {job!r} is not registered and no queue is known")
            self._queue_cache[job] = queue.decode()
        return self._queue_cache[job]
