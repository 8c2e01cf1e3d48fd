"""Durable state of a namespace: values, counters, dedupe markers and locks.

Storage (one Redis STRING per name, all keys built by `keys.py`):

- `keys.state(name)` holds values, counters and markers; they share one key space.
  An `int` (not `bool`) is stored as its decimal string, exactly as Redis `INCRBY`
  writes counters, so `set("n", 5)` then `incr("n")` gives 6 and `get()` of a counter
  returns an int. Every other value is stored serialized (msgpack by default).
  `get()` reads bytes matching `-?[0-9]+` as an int and deserializes everything else.
  This is unambiguous: a msgpack value that starts with an ASCII byte is a one-byte
  positive fixint, i.e. an int, which `set()` never stores as msgpack; and `set()`
  refuses (PayloadError) any serialized non-int that would look like a decimal, so a
  custom serializer cannot make it ambiguous either. A marker (`mark`) stores True.
- `keys.lock(name)` holds a lock's random token (SET NX PX). Release and extension are
  token-checked Lua scripts (`lock_release`, `lock_extend`), so a holder whose lock
  expired can neither release nor extend the lock of the next holder.

TTLs are seconds (int/float) or a timedelta; None means no expiry. Waiting for a lock
polls with jittered exponential backoff (5 ms growing to 100 ms): simple, and safe on
Redis Cluster and through failovers, where a pub/sub wakeup could be missed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Protocol, TypeVar

from .._core.namespace import Namespace
from .._core.records import Duration, millis, seconds
from .._core.scripts import redis_call
from .._core.serializer import dumps_checked
from ..errors import InvalidArgumentError, LockError, PayloadError

__all__ = ["Lock", "Runner", "State", "SyncLock", "SyncState"]

T = TypeVar("T")
MAX_NAME = 512
INT64 = (-(1 << 63), (1 << 63) - 1)
_DECIMAL = re.compile(rb"-?[0-9]+")
_FIRST_PAUSE, _MAX_PAUSE = 0.005, 0.1
log = logging.getLogger(__name__)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise InvalidArgumentError(f"invalid state name {name!r}: use a str of 1..512 chars")
    return name


def _ttl_ms(ttl: Duration | None, what: str = "ttl") -> int:
    """Whole milliseconds (at least 1) of a positive TTL; 0 for None (no expiry)."""
    if ttl is None:
        return 0
    secs = seconds(ttl, what)
    if secs <= 0:
        raise InvalidArgumentError(f"{what} must be positive (None means no expiry)")
    return max(1, millis(secs, what))


class State:
    """Durable values of one namespace: `set/get/delete/incr/mark` and `lock`."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns

    def _encode(self, name: str, value: Any) -> bytes:
        what = f"state {name!r}"
        if isinstance(value, int) and not isinstance(value, bool):
            dumps_checked(self._ns.serializer, value, what)  # the app's serializer decides
            return str(int(value)).encode()
        data = dumps_checked(self._ns.serializer, value, what)
        if _DECIMAL.fullmatch(data):
            raise PayloadError("serialized value looks like an integer counter; refusing it")
        return data

    def _decode(self, name: str, data: bytes) -> Any:
        if _DECIMAL.fullmatch(data):
            return int(data)
        try:
            return self._ns.serializer.loads(data)
        except PayloadError:
            raise
        except Exception as exc:
            raise PayloadError(f"state {name!r} does not deserialize: {exc}") from exc

    @redis_call
    async def set(self, name: str, value: Any, ttl: Duration | None = None) -> None:
        """Store `value` under `name`, expiring after `ttl` (None: never; clears an old TTL)."""
        key = self._ns.name_keys(_check_name(name)).state(name)
        ttl_ms = _ttl_ms(ttl)
        data = self._encode(name, value)
        await self._ns.scripts.gate()
        await self._ns.redis.set(key, data, px=ttl_ms or None)

    @redis_call
    async def get(self, name: str, default: Any = None) -> Any:
        """The value stored under `name` (an int for counters), or `default` when absent."""
        key = self._ns.name_keys(_check_name(name)).state(name)
        await self._ns.scripts.gate()
        data = await self._ns.redis.get(key)
        return default if data is None else self._decode(name, data)

    @redis_call
    async def delete(self, name: str) -> bool:
        """Remove `name`; True when it existed."""
        key = self._ns.name_keys(_check_name(name)).state(name)
        await self._ns.scripts.gate()
        return bool(await self._ns.redis.delete(key))

    async def incr(self, name: str, amount: int = 1, ttl: Duration | None = None) -> int:
        """Add `amount` to the counter `name` (created at 0) and return the new value.

        `ttl` applies only when this call creates the counter (atomically, in Lua); later
        calls keep the expiry it got. InvalidArgumentError if `name` holds a non-integer.
        """
        _check_name(name)
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise InvalidArgumentError(f"amount must be an int, not {amount!r}")
        if not INT64[0] <= amount <= INT64[1]:
            raise InvalidArgumentError(f"amount {amount} is outside the 64-bit range")
        ttl_ms = _ttl_ms(ttl)
        return await self._ns.name_scripts(name).state_incr(name, amount, ttl_ms)

    @redis_call
    async def mark(self, name: str, ttl: Duration) -> bool:
        """Set a dedupe marker for `ttl`; True only for the first call while it lives."""
        key = self._ns.name_keys(_check_name(name)).state(name)
        ttl_ms = _ttl_ms(ttl)
        if ttl_ms == 0:
            raise InvalidArgumentError("mark needs a ttl")
        await self._ns.scripts.gate()
        return bool(await self._ns.redis.set(key, self._encode(name, True), px=ttl_ms, nx=True))

    def lock(self, name: str, ttl: Duration = 30, wait: Duration | None = 5) -> Lock:
        """A distributed lock: `async with st.lock("invoice:42", ttl=30, wait=5): ...`.

        Raises LockError if not acquired within `wait` seconds (None: wait forever).
        While held, the TTL is extended every ttl/3; if the lock is lost anyway, LockError
        is raised when the block exits.
        """
        return Lock(self._ns, _check_name(name), ttl, wait)


class Lock:
    """A token-fenced Redis lock, automatically extended while held (from `State.lock`)."""

    def __init__(self, ns: Namespace, name: str, ttl: Duration, wait: Duration | None) -> None:
        self.name = name
        self.ttl_ms = _ttl_ms(ttl)
        if not self.ttl_ms:
            raise InvalidArgumentError("a lock needs a ttl")
        self.wait = None if wait is None else seconds(wait, "wait")
        self.token = secrets.token_hex(16)
        self.lost = False
        self._ns = ns
        self._key = ns.name_keys(name).lock(name)
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """True between a successful acquire and release (unless found lost)."""
        return self._task is not None and not self.lost

    @redis_call
    async def acquire(self) -> None:
        """Take the lock, polling with backoff until `wait` runs out (then LockError)."""
        if self._task is not None:
            raise LockError(f"lock {self.name!r}: this Lock object is already held")
        deadline = None if self.wait is None else time.monotonic() + self.wait
        pause = _FIRST_PAUSE
        await self._ns.scripts.gate()
        while True:
            sent = time.monotonic()
            if await self._ns.redis.set(self._key, self.token, px=self.ttl_ms, nx=True):
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise LockError(f"lock {self.name!r} not acquired within {self.wait:g}s")
            sleep = pause * random.uniform(0.8, 1.2)
            await asyncio.sleep(sleep if deadline is None else min(sleep, deadline - now))
            pause = min(pause * 2, _MAX_PAUSE)
        self.lost = False
        self._task = asyncio.create_task(self._keep(sent + self.ttl_ms / 1000))

    async def _keep(self, valid_until: float) -> None:
        """Extend the lock every ttl/3 until cancelled; note it as lost when it is."""
        interval = self.ttl_ms / 3000
        while True:
            await asyncio.sleep(interval)
            sent = time.monotonic()
            try:
                ok = await self._extend()
            except Exception:  # a connection blip: retry until the TTL would have run out
                log.warning("extending lock %r failed", self.name, exc_info=True)
                if time.monotonic() >= valid_until:
                    self.lost = True
                    return
                continue
            if not ok:
                self.lost = True
                log.warning("lock %r was lost while held", self.name)
                return
            valid_until = sent + self.ttl_ms / 1000

    async def _extend(self) -> bool:
        return await self._ns.name_scripts(self.name).lock_extend(
            self.name, self.token, self.ttl_ms
        )

    async def release(self) -> bool:
        """Stop extending and delete the lock if it still holds our token; True if it did."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        released = await self._ns.name_scripts(self.name).lock_release(self.name, self.token)
        if not released:
            self.lost = True
        return released

    async def __aenter__(self) -> Lock:
        await self.acquire()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        released = await self.release()
        if released:
            return
        message = f"lock {self.name!r} was lost while held (it expired or was taken over)"
        if exc is None:
            raise LockError(message)
        exc.add_note(message)


class Runner(Protocol):
    """Runs a coroutine to completion and returns its result (on one persistent loop)."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> T: ...


class SyncState:
    """The State methods, synchronous: each runs the async one through `run`.

    `run` must execute every coroutine on the same long-lived event loop (as the sync
    facade's background loop does): a held lock's extension task lives there.
    """

    def __init__(self, state: State, run: Runner) -> None:
        self._state = state
        self._run = run

    def set(self, name: str, value: Any, ttl: Duration | None = None) -> None:
        """Store `value` under `name` (see `State.set`)."""
        self._run(self._state.set(name, value, ttl))

    def get(self, name: str, default: Any = None) -> Any:
        """The value under `name`, or `default` (see `State.get`)."""
        return self._run(self._state.get(name, default))

    def delete(self, name: str) -> bool:
        """Remove `name`; True when it existed."""
        return self._run(self._state.delete(name))

    def incr(self, name: str, amount: int = 1, ttl: Duration | None = None) -> int:
        """Add to a counter; TTL only on creation (see `State.incr`)."""
        return self._run(self._state.incr(name, amount, ttl))

    def mark(self, name: str, ttl: Duration) -> bool:
        """Dedupe marker: True only the first time (see `State.mark`)."""
        return self._run(self._state.mark(name, ttl))

    def lock(self, name: str, ttl: Duration = 30, wait: Duration | None = 5) -> SyncLock:
        """A lock for `with st.lock(...)`: (see `State.lock`)."""
        return SyncLock(self._state.lock(name, ttl, wait), self._run)


class SyncLock:
    """A synchronous context manager around a `Lock`."""

    def __init__(self, lock: Lock, run: Runner) -> None:
        self.lock = lock
        self._run = run

    @property
    def held(self) -> bool:
        """True while the lock is held."""
        return self.lock.held

    def acquire(self) -> None:
        """Take the lock (LockError when not acquired within its wait)."""
        self._run(self.lock.acquire())

    def release(self) -> bool:
        """Release the lock; True when it was still ours."""
        return self._run(self.lock.release())

    def __enter__(self) -> SyncLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._run(self.lock.__aexit__(et, exc, tb))
