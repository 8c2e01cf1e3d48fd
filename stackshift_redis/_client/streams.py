"""Reading run output streams: `RunHandle.stream()`.

A reader first catches up with XRANGE (non-blocking, in batches), then waits on the run's
*tail*: one XREAD BLOCK loop per run shared by every reader of it in this process, so a
hundred readers of one run (browser tabs on one dashboard) hold one blocked connection and
cost Redis one read per batch of new messages, not a hundred. The tail hands each reader
the new entries past its own position; a reader behind the tail catches up with XRANGE.

The end: `follow.lua` marks an unfinished run, so its finish appends an end entry
(`{e: status}`) that wakes the tail at once; the reader confirms the run is final (a
retried run publishes again), reads what is left and stops. A quiet block (about 5 s,
well inside the client's socket timeout) makes the tail check the run's status too, so
a run that expired or a lost end entry cannot keep a reader waiting. Connection errors
(Redis restarting) are ridden out for up to a minute: the reader resumes from the last
id it yielded, so nothing is lost or repeated.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from .._core.namespace import Namespace
from .._core.output import StreamMessage, end_of, parse_message, str_id, topic_of
from .._core.records import RunStatus
from .._core.scripts import CONNECTION_ERRORS, unavailable
from ..errors import RedisUnavailableError, RunNotFoundError
from .inspector import jsonable
from .reads import run_status

BATCH = 500  # entries per XRANGE / XREAD
OUTAGE_S = 60.0  # a reader rides out connection errors this long, then raises
MAX_CALLS = 32  # readers' calls in flight at once (a RedisCluster client fails, not
# waits, when its pool of 100 connections per node runs out; see ResultWaiter)
_SAFETY_S = 5.0
_DEFAULT_SOCKET_TIMEOUT_S = 5.0  # redis-py's, when the client does not set one
T = TypeVar("T")
Entry = tuple[str, dict[bytes, bytes]]


def block_ms(client: Any) -> int:
    """An XREAD BLOCK well inside the client's socket timeout (redis-py 8 defaults it to
    5 s): a read outlasting it fails, and RedisCluster then retries it for about a minute."""
    kwargs = getattr(client, "connection_kwargs", None)  # RedisCluster
    if kwargs is None:
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    timeout = kwargs.get("socket_timeout", _DEFAULT_SOCKET_TIMEOUT_S)
    if timeout is None:
        return int(_SAFETY_S * 1000)
    return max(50, min(int(_SAFETY_S * 1000), int(float(timeout) * 500)))


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Wake:
    """What a wait on the tail returns: new entries past the reader's position; or, after
    a quiet block, the run's status ("" when it is gone); neither: catch up with XRANGE."""

    entries: list[Entry] = field(default_factory=list)
    status: str | None = None


@dataclass
class _Tail:
    pos: str
    waiters: dict[asyncio.Future[Wake], str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class Tails:
    """The tails of the runs followed in this process (one XREAD BLOCK loop per run)."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns
        self._tails: dict[str, _Tail] = {}
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """A reader's call: at most MAX_CALLS at once, retried through connection errors
        for up to OUTAGE_S (backing off), then RedisUnavailableError."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(MAX_CALLS))
        first: float | None = None
        pause = 0.1
        while True:
            try:
                async with self._slots[1]:
                    return await fn()
            except (*CONNECTION_ERRORS, RedisUnavailableError) as exc:
                now = time.monotonic()
                first = now if first is None else first
                if now - first > OUTAGE_S:
                    raise unavailable(exc) from exc
                await asyncio.sleep(pause)
                pause = min(1.0, pause * 2)

    async def wait(self, run_id: str, after: str) -> Wake:
        """Wait for entries past `after` (see Wake)."""
        tail = self._tails.get(run_id)
        if tail is None:
            tail = self._tails[run_id] = _Tail(after)
            tail.task = asyncio.create_task(self._loop(run_id, tail), name="stackshift-tail")
        elif _key(after) < _key(tail.pos):
            return Wake()  # the tail read past this reader: it catches up first
        fut: asyncio.Future[Wake] = asyncio.get_running_loop().create_future()
        tail.waiters[fut] = after
        try:
            return await fut
        finally:
            tail.waiters.pop(fut, None)

    def _wake(self, tail: _Tail, entries: list[Entry], status: str | None = None) -> None:
        for fut, after in list(tail.waiters.items()):
            if not fut.done():
                mine = [e for e in entries if _key(e[0]) > _key(after)]
                fut.set_result(Wake(mine, status))
        tail.waiters.clear()

    async def _loop(self, run_id: str, tail: _Tail) -> None:
        redis, key = self._ns.redis, self._ns.keys_of(run_id).output(run_id)
        block = block_ms(redis)
        try:
            while tail.waiters:
                reply = await redis.xread({key: tail.pos}, count=BATCH, block=block)
                if reply:
                    entries = [(str_id(i), f) for i, f in reply[0][1]]
                    tail.pos = entries[-1][0]
                    self._wake(tail, entries)
                else:  # quiet: the run may have expired, or its end entry been lost
                    self._wake(tail, [], await run_status(self._ns, run_id) or "")
        except asyncio.CancelledError:
            raise
        except Exception:  # the readers catch up and meet the error themselves
            pass
        finally:
            self._wake(tail, [])
            if self._tails.get(run_id) is tail:
                del self._tails[run_id]

    async def close(self) -> None:
        """Stop every tail (cancels repeated: redis/redis-py#2028, see ResultWaiter.close)."""
        tails, self._tails = list(self._tails.values()), {}
        for tail in tails:
            task = tail.task
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            self._wake(tail, [])


async def follow(
    ns: Namespace, tails: Tails, run_id: str, topic: str | None, after: str | None
) -> AsyncGenerator[StreamMessage, None]:
    """The run's messages after `after` (all topics, or `topic`), in order, until the run
    is final and every message was read. RunNotFoundError when there is no such run."""
    redis, key = ns.redis, ns.keys_of(run_id).output(run_id)
    pos = after or "0-0"
    status = await tails.call(lambda: ns.scripts_of(run_id).follow(run_id))
    if status is None:
        raise RunNotFoundError(f"no run {run_id}")
    final = RunStatus(status).is_final

    async def is_final() -> bool:
        now = await tails.call(lambda: run_status(ns, run_id))
        return now is None or RunStatus(now).is_final

    while True:
        raw = await tails.call(partial(redis.xrange, key, min=f"({pos}", max="+", count=BATCH))
        entries: list[Entry] = [(str_id(i), f) for i, f in raw]
        messages, ended = _messages(entries, topic, ns)
        for msg in messages:
            yield msg
        pos = entries[-1][0] if entries else pos
        if len(entries) == BATCH:
            continue
        if final or (ended and await is_final()):
            return
        while True:  # caught up: wait on the run's tail
            wake = await tails.wait(run_id, pos)
            messages, ended = _messages(wake.entries, topic, ns)
            for msg in messages:
                yield msg
            pos = wake.entries[-1][0] if wake.entries else pos
            if wake.status is not None:
                final = wake.status == "" or RunStatus(wake.status).is_final
                if final:
                    break  # read what is left, then stop
            elif not wake.entries:
                break  # behind the tail, or it met an error: catch up
            elif ended and await is_final():
                final = True
                break


def _messages(
    entries: list[Entry], topic: str | None, ns: Namespace
) -> tuple[list[StreamMessage], bool]:
    """The messages among `entries` (of `topic`, or all), and whether an end entry was met."""
    out: list[StreamMessage] = []
    ended = False
    for entry_id, fields in entries:
        if end_of(fields) is not None:
            ended = True
        elif topic is None or topic_of(fields) == topic:
            out.append(parse_message(entry_id, fields, ns.serializer))
    return out, ended


def message_json(msg: StreamMessage) -> str:
    """A message as one line of JSON: {id, topic, data, at, attempt} (the dashboard's SSE
    `data:`, `stackshift runs tail --json`)."""
    return json.dumps(
        {
            "id": msg.id,
            "topic": msg.topic,
            "data": jsonable(msg.data),
            "at": msg.at.isoformat(),
            "attempt": msg.attempt,
        },
        ensure_ascii=False,
    )
