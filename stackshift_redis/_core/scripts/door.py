"""The door itself: calling a script, replies as dataclasses, the one error map.

redis-py's `Script` does SHA caching, EVALSHA and reload on NOSCRIPT: no cache of our own.
Every call passes the namespace prefix in ARGV where the script derives keys with `K`
(lua/README.md); all keys share the namespace hash tag, so each call is one slot.
Error replies (`CODE detail`) become stackshift errors here and nowhere else.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...errors import RedisUnavailableError, from_redis_error
from ..keys import Keys
from ..luasrc import script_names, source

# a cluster that answers CLUSTERDOWN (a master restarting, slots not served) runs nothing:
# unavailable for a while, like a refused connection, and as safe to send again
CONNECTION_ERRORS = (
    ConnectionError,
    TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
)
CLUSTER_CONCURRENT = 32  # fanned-out calls in flight at once per Redis Cluster client
_ROOMS: weakref.WeakKeyDictionary[Any, tuple[Any, asyncio.Semaphore]] = weakref.WeakKeyDictionary()


def cluster_room(redis: Any) -> asyncio.Semaphore:
    """The limit shared by every fanned-out call (a batch, an event's legs) on one
    RedisCluster client: a node's pool refuses a connection past its max_connections
    (100 by default) instead of waiting, so concurrent batches must share one bound."""
    loop = asyncio.get_running_loop()
    found = _ROOMS.get(redis)
    if found is None or found[0] is not loop:
        found = (loop, asyncio.Semaphore(CLUSTER_CONCURRENT))
        _ROOMS[redis] = found
    return found[1]


P = ParamSpec("P")
R = TypeVar("R")


def unavailable(exc: BaseException) -> RedisUnavailableError:
    """A connection failure as the public error (the redis-py error is its cause)."""
    if isinstance(exc, RedisUnavailableError):
        return exc
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RedisUnavailableError(f"Redis unavailable: {text}")


def redis_call(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Decorate a public coroutine that talks to Redis: connection failures (refused,
    timed out, unknown host) raise RedisUnavailableError, a StackShiftError."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except RedisUnavailableError:
            raise
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc

    return wrapper


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_str(flat[i]): _str(flat[i + 1]) for i in range(0, len(flat), 2)}


# (run id, idempotency key | None, payload) or the same plus the flow-control plan JSON
NewRun = tuple[str, str | None, bytes] | tuple[str, str | None, bytes, str]
StartReply = tuple[str | None, bool, str | None]  # run id, deduplicated, skipped reason


@dataclass(frozen=True)
class ScriptCall:
    """One prepared script call (batched by the worker into one pipeline)."""

    script: str
    run_id: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True)
class TakenRun:
    """A run leased by `take`: what the worker needs to execute one attempt."""

    run_id: str
    queue: str
    token: str
    execution: int  # takes of the run so far, this one included (the lease token)
    job: str
    payload: bytes
    event: bytes  # the triggering event (serialized) or b""
    steps: list[bytes]  # flat [name, record, ...]
    fails: int  # failed attempts so far
    resumed: bool  # the run waited and this attempt continues it
    fields: dict[str, str]  # fields stored by hooks at start (x:<name>)
    schedule: str = ""  # the schedule that started the run, or ""
    scheduled_at: int = 0  # its tick (epoch ms), or 0
    waited_ms: int = 0  # from ready to taken (server clock)
    resumed_by: str = ""  # event | timer | child_ok | child_failed when resumed
    pending: tuple[str, ...] = ()  # steps with a wait registered by an earlier attempt
    version: int = 1  # the job version the run is pinned to


@dataclass(frozen=True)
class TakeReply:
    """Runs leased by one `take`, and the entries it could not lease: (run id, queue,
    outcome) with outcome 'poison' (delivered too often: failed), 'damaged' (an unusable
    field: failed with RunDataError) or 'missing' (no such run: dropped)."""

    taken: list[TakenRun]
    dropped: list[tuple[str, str, str]]


@dataclass(frozen=True)
class DueSchedule:
    """A schedule due now, as `due_schedules` reads it (what a worker plans ticks from)."""

    name: str
    next_ms: int
    rev: str
    job: str
    cron: str  # "" for an interval
    every_ms: int  # 0 for a cron
    timezone: str
    catchup: str
    jitter_ms: int


@dataclass(frozen=True)
class WaitReply:
    """A wait script's outcome: 'done' (settled at once: `record` is the step's record),
    'pending' (registered; the attempt goes on), parked: 'waiting' (this call parked the
    run) or 'parked' (the attempt had parked it already), or 'cancel' (not parked: a
    cancel was requested for the run)."""

    outcome: str
    record: bytes | None = None
    child: str | None = None  # invoke: the child run id

    @property
    def parked(self) -> bool:
        """The run is parked: the attempt ends (Suspended)."""
        return self.outcome in ("waiting", "parked")


@dataclass(frozen=True)
class ParkReply:
    """`park`: the run was parked, or these awaited steps have settled (step -> record),
    or neither: a cancel was requested for the run."""

    parked: bool
    settled: dict[str, bytes]
    cancel: bool = False


@dataclass(frozen=True)
class QueueStats:
    """A queue's gauges (queue_stats): runs ready, scheduled, running, waiting and held
    for a version no live worker serves (unserved)."""

    queue: str
    ready: int
    scheduled: int
    running: int
    waiting: int
    unserved: int


@dataclass(frozen=True)
class SendReply:
    """What `send_event` did."""

    duplicate: bool
    resumed: list[str]
    started: list[str]
    cancelled: list[str]  # runs cancelled by their CancelOn rules


UNGATED = ("layout", "list_runs")  # the layout check itself, and reads (any layout)


class Door:
    """Loads every script and runs one (or a batch) with errors mapped. `redis` may be a
    Redis or RedisCluster client. `virtual_clock` (TestEnv only): the scripts read the
    time from `keys.clock()`."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        *,
        virtual_clock: bool = False,
        gate: Callable[[], Awaitable[float]] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self._gate = gate  # checks the storage layout (layout.py): until the time it returns
        self._gate_until = 0.0
        clock_key = keys.clock() if virtual_clock else None
        self._sources = {n: source(n, clock_key) for n in script_names()}
        self._scripts = {n: redis.register_script(text) for n, text in self._sources.items()}

    async def _pass_gate(self) -> None:
        if self._gate is not None and time.monotonic() >= self._gate_until:
            self._gate_until = await self._gate()

    async def gate(self) -> None:
        """The layout gate alone, for writes made without a script (State's plain
        commands): LayoutError on a newer layout; waits for a migration under way."""
        await self._pass_gate()

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script; error replies become stackshift errors."""
        if name not in UNGATED:
            await self._pass_gate()
        script = self._scripts[name]
        try:
            try:
                return await script(keys=list(keys), args=list(args))
            except NoScriptError:  # lost again between redis-py's load and call (a restart)
                return await script(keys=list(keys), args=list(args))
        except RedisUnavailableError:
            raise
        except CONNECTION_ERRORS as exc:  # before ResponseError: CLUSTERDOWN is one
            raise unavailable(exc) from exc
        except ResponseError as exc:
            raise from_redis_error(exc) from exc

    async def queue_call(
        self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> None:
        """Add one script call to a pipeline.

        A Redis pipeline loads missing scripts before it runs (redis-py). A RedisCluster
        pipeline refuses EVALSHA and could not reload a script after NOSCRIPT, so there
        the call is queued as EVAL with the script's text (the server caches it too).
        """
        await self._pass_gate()
        if isinstance(pipe, Pipeline):
            await self._scripts[name](keys=list(keys), args=list(args), client=pipe)
        else:
            pipe.eval(self._sources[name], len(keys), *keys, *args)

    async def _call_or_error(self, c: ScriptCall, room: asyncio.Semaphore) -> Any:
        try:
            async with room:
                return await self.call(c.script, c.keys, c.args)
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:
            return exc

    async def run_batch(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run prepared calls in one round trip (on a Redis Cluster, concurrently: a cluster
        pipeline would send each script's text, which Redis hashes on every call); per
        call its reply or its exception. Connection errors propagate (the caller decides
        whether to retry)."""
        await self._pass_gate()
        if len(calls) == 1:
            c = calls[0]
            try:
                return [await self.call(c.script, c.keys, c.args)]
            except CONNECTION_ERRORS:
                raise
            except Exception as exc:
                return [exc]
        if isinstance(self.redis, RedisCluster):  # concurrent EVALSHA: see queue_call
            room = cluster_room(self.redis)
            return list(await asyncio.gather(*(self._call_or_error(c, room) for c in calls)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in calls:
                await self.queue_call(pipe, c.script, c.keys, c.args)
            try:
                results = await pipe.execute(raise_on_error=False)
            except RedisUnavailableError:
                raise
            except CONNECTION_ERRORS as exc:
                raise unavailable(exc) from exc
        return [from_redis_error(r) if isinstance(r, ResponseError) else r for r in results]
