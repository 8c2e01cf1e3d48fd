"""`StateTx`: what a transactional step's `fn` reads and buffers (see transact.py).

Reads go to Redis (one GET each, remembered with the bytes seen: the commit checks that
each key still holds them); writes, events and starts are buffered and applied by the one
commit script. A key read after the step wrote it returns the written value."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from .._client.events import EventBus
from .._client.starting import Starter, StartOptions
from .._client.state import INT64, State, _check_name, _ttl_ms
from .._core.keys import check_name
from .._core.records import Duration
from .._core.scripts import SendEventRequest, StartRequest
from ..errors import InvalidArgumentError

SUMMARY_MAX = 20  # names listed per kind in the timeline entry (then a count)


@dataclass(frozen=True)
class _Start:
    job: str
    payload: Any
    options: StartOptions


class StateTx:
    """The state of a transactional step (`ctx.step.transact`): `await get`, `await incr`;
    `set`, `delete`, `send_event` and `start` are buffered and take effect together with
    the step's result when it commits, exactly once."""

    def __init__(self, state: State, events: EventBus, event_id: str) -> None:
        self._state = state
        self._events = events
        self._event_id = event_id  # default event ids: "<event_id>:<n>"
        self.reads: dict[str, bytes | None] = {}  # name -> bytes seen (None: absent)
        self.writes: dict[str, tuple[str, bytes, int]] = {}  # name -> (op, bytes, ttl_ms)
        self.events: list[SendEventRequest] = []
        self.event_data: list[Any] = []  # each event's data (its legs' routing, partitions)
        self.starts: list[_Start] = []

    def _local(self, name: str) -> tuple[bool, bytes | None]:
        """(known here, bytes or None) from this transaction's writes and reads."""
        if name in self.writes:
            op, data, _ = self.writes[name]
            return True, None if op == "d" else data
        if name in self.reads:
            return True, self.reads[name]
        return False, None

    async def _raw(self, name: str) -> bytes | None:
        known, data = self._local(_check_name(name))
        if not known:
            ns = self._state._ns
            await ns.scripts.gate()
            data = await ns.redis.get(ns.name_keys(name).state(name))
            self.reads[name] = data
        return data

    async def get(self, name: str, default: Any = None) -> Any:
        """The value of `name` as the commit will see it (checked at commit): this step's
        own write if any, else the stored value, else `default`."""
        data = await self._raw(name)
        return default if data is None else self._state._decode(name, data)

    def set(self, name: str, value: Any, ttl: Duration | None = None) -> None:
        """Store `value` under `name` at commit (ttl as State.set: None clears it)."""
        _check_name(name)
        self.writes[name] = ("s", self._state._encode(name, value), _ttl_ms(ttl))

    def delete(self, name: str) -> None:
        """Remove `name` at commit."""
        self.writes[_check_name(name)] = ("d", b"", 0)

    async def incr(self, name: str, by: int = 1) -> int:
        """Add `by` to the counter `name` (absent: 0) at commit; returns the value the
        commit writes. Awaited: it reads the counter (a read the commit checks). The key
        keeps its TTL (a value this step set keeps the step's)."""
        if not isinstance(by, int) or isinstance(by, bool):
            raise InvalidArgumentError(f"by must be an int, not {by!r}")
        current = await self.get(name, 0)
        if not isinstance(current, int) or isinstance(current, bool):
            raise InvalidArgumentError(f"state {name!r} is not an integer counter")
        value = current + by
        if not INT64[0] <= value <= INT64[1]:
            raise InvalidArgumentError(f"state {name!r} would leave the 64-bit range")
        op, _, ttl_ms = self.writes.get(name, ("k", b"", 0))
        self.writes[name] = ("s" if op == "d" else op, str(value).encode(), ttl_ms)
        return value

    def send_event(self, name: str, data: Any = None, id: str | None = None) -> None:
        """Send event `name` at commit, exactly as `send_event` (id: default one per step
        and position, so a re-run of the step sends the same event)."""
        event_id = id if id is not None else f"{self._event_id}:{len(self.events) + 1}"
        self.events.append(self._events.prepare(name, data, event_id))
        self.event_data.append(data)

    def start(
        self,
        job: str,
        payload: Any = None,
        *,
        queue_name: str | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: Any = None,
        priority: int | None = None,
    ) -> None:
        """Start a run of `job` at commit, as `start` (idempotency and flow control)."""
        check_name("job", job)
        keys = None if idempotency_key is None else [idempotency_key]
        options = StartOptions(
            queue_name=queue_name,
            idempotency_keys=keys,
            idempotency_ttl=idempotency_ttl,
            delay=delay,
            run_at=run_at,
            priority=priority,
        )
        self.starts.append(_Start(job, payload, options))

    async def prepared_starts(
        self, starter: Starter, near: int = 0
    ) -> list[tuple[StartRequest, tuple[str, str | None, bytes, str]]]:
        """Each buffered start as its start call (queue resolved, payload checked; with
        partitions, a run no key routes goes on partition `near`: the commit's)."""
        out = []
        for s in self.starts:
            request, [run] = await starter.prepare(s.job, [s.payload], s.options, near=near)
            out.append((request, (run[0], run[1], run[2], run[3] if len(run) > 3 else "")))
        return out

    def summary(self) -> str:
        """What the commit applies, for the step's timeline entry (keys and event names
        listed up to SUMMARY_MAX each; the started run ids are added by the script)."""
        sets = [n for n, w in self.writes.items() if w[0] != "d"]
        dels = [n for n, w in self.writes.items() if w[0] == "d"]
        out: dict[str, Any] = {}
        for kind, names in (("set", sets), ("deleted", dels)):
            if names:
                more = [f"+{len(names) - SUMMARY_MAX} more"] if len(names) > SUMMARY_MAX else []
                out[kind] = names[:SUMMARY_MAX] + more
        if self.events:
            out["events"] = [[e.name, e.event_id] for e in self.events[:SUMMARY_MAX]]
        return json.dumps(out)


class SyncStateTx:
    """`StateTx` for a plain-function handler's step: `get` and `incr` block."""

    def __init__(self, tx: StateTx, loop: asyncio.AbstractEventLoop) -> None:
        self._tx = tx
        self._loop = loop

    def get(self, name: str, default: Any = None) -> Any:
        """As StateTx.get (blocking)."""
        return asyncio.run_coroutine_threadsafe(self._tx.get(name, default), self._loop).result()

    def incr(self, name: str, by: int = 1) -> int:
        """As StateTx.incr (blocking)."""
        return asyncio.run_coroutine_threadsafe(self._tx.incr(name, by), self._loop).result()

    def set(self, name: str, value: Any, ttl: Duration | None = None) -> None:
        """As StateTx.set."""
        self._tx.set(name, value, ttl)

    def delete(self, name: str) -> None:
        """As StateTx.delete."""
        self._tx.delete(name)

    def send_event(self, name: str, data: Any = None, id: str | None = None) -> None:
        """As StateTx.send_event."""
        self._tx.send_event(name, data, id)

    def start(self, job: str, payload: Any = None, **options: Any) -> None:
        """As StateTx.start."""
        self._tx.start(job, payload, **options)
