"""Flow control: small typed config objects for jobs, validated when declared, and their
evaluation at start into the per-run plan the `start` script enforces.

Every rule is enforced by the Lua scripts on the server, atomically (lua/README.md, "Flow
control"). Python only validates, resolves each rule's `key` against the payload once at
start, and hands the server a small JSON plan per run:

    g  the run's group (its ready set; groups take turns): the job and its Concurrency
       key values; the job alone for a throttled job without Concurrency
    s  [[slot id, limit], ...]             concurrency slots (keys.slot)
    p  priority (runs started by events; `start` passes it as a run field)
    t  [key id, period ms, limit, burst]   throttle (GCRA start-time reservation)
    r  [key id, period ms, limit]          rate limit (sliding window; excess skipped)
    d  [key id, period ms, timeout ms|0]   debounce
    o  [key id, "skip" | "cancel"]         singleton
    c  [[event, shape, values key, timeout ms | -1], ...]   cancel on event
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError
from .keys import check_name
from .records import Duration, millis

KeyFn = Callable[[Any], str]
Key = str | KeyFn | None
MatchKeyFn = Callable[[Mapping[str, Any]], tuple[str, str]]  # events.match_key
PRIORITY_MIN, PRIORITY_MAX = -100, 100
SINGLETON_MODES = ("skip", "cancel")
_PATH_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_MISSING = object()


def check_priority(value: object, what: str = "priority") -> int:
    """An int in -100..100 (higher runs first)."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not PRIORITY_MIN <= value <= PRIORITY_MAX
    ):
        raise InvalidArgumentError(f"{what} must be an int in -100..100, not {value!r}")
    return value


def _positive_int(value: object, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"{what} must be an int > 0, not {value!r}")


def _positive_ms(value: Any, what: str) -> int:
    ms = millis(value, what)  # raises InvalidArgumentError for a non-duration
    if ms <= 0:
        raise InvalidArgumentError(f"{what} must be > 0, not {value!r}")
    return ms


def _check_key(key: object, what: str) -> None:
    if key is None or callable(key):
        return
    if not isinstance(key, str) or not _PATH_RE.match(key):
        raise InvalidArgumentError(
            f"{what} must be a dotted payload path ('customer.id'), a callable or None, not {key!r}"
        )


@dataclass(frozen=True)
class Concurrency:
    """At most `limit` executing runs per value of `key` (None: for the whole job)."""

    limit: int
    key: Key = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "Concurrency limit")
        _check_key(self.key, "Concurrency key")


@dataclass(frozen=True)
class Throttle:
    """At most `limit` (+ `burst`) starts per `period` per key; excess runs wait, in order."""

    limit: int
    period: Duration
    key: Key = None
    burst: int = 0

    def __post_init__(self) -> None:
        _positive_int(self.limit, "Throttle limit")
        _positive_ms(self.period, "Throttle period")
        _check_key(self.key, "Throttle key")
        if not isinstance(self.burst, int) or isinstance(self.burst, bool) or self.burst < 0:
            raise InvalidArgumentError(f"Throttle burst must be an int >= 0, not {self.burst!r}")


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` starts per `period` per key; excess starts are skipped."""

    limit: int
    period: Duration
    key: Key = None

    def __post_init__(self) -> None:
        _positive_int(self.limit, "RateLimit limit")
        _positive_ms(self.period, "RateLimit period")
        _check_key(self.key, "RateLimit key")


@dataclass(frozen=True)
class Debounce:
    """A burst of starts of one key (each within `period` of the last) becomes one run with
    the last payload, started `period` after the last start, at most `timeout` after the
    first."""

    period: Duration
    key: Key = None
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        _positive_ms(self.period, "Debounce period")
        _check_key(self.key, "Debounce key")
        if self.timeout is not None:
            _positive_ms(self.timeout, "Debounce timeout")


@dataclass(frozen=True)
class Singleton:
    """At most one unfinished run per key: "skip" new starts, or "cancel" the old run."""

    key: Key = None
    mode: str = "skip"

    def __post_init__(self) -> None:
        _check_key(self.key, "Singleton key")
        if self.mode not in SINGLETON_MODES:
            raise InvalidArgumentError(
                f"Singleton mode must be 'skip' or 'cancel', not {self.mode!r}"
            )


@dataclass(frozen=True)
class CancelOn:
    """A matching event cancels the run in any state (running: at its next step).

    `match="order_id"`: event data `order_id` equals payload `order_id`; a dict
    {event_path: payload_path} allows different names; None: any event of that name.
    `timeout`: how long after start the rule applies (None: until the run ends)."""

    event: str | None = None
    match: str | Mapping[str, str] | None = None
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        if self.event is None:
            raise InvalidArgumentError("CancelOn event is required (an event name)")
        check_name("event", self.event)
        for ev, pl in self.pairs():
            _check_key(ev, "CancelOn match (event path)")
            _check_key(pl, "CancelOn match (payload path)")
        if self.timeout is not None:
            _positive_ms(self.timeout, "CancelOn timeout")

    def pairs(self) -> list[tuple[str, str]]:
        """(event path, payload path) pairs of the match."""
        if self.match is None:
            return []
        if isinstance(self.match, str):
            return [(self.match, self.match)]
        if not isinstance(self.match, Mapping) or not self.match:
            raise InvalidArgumentError("CancelOn match must be a path, a non-empty dict or None")
        return [(str(k), v) for k, v in self.match.items()]


def key_value(key: Key, payload: Any, what: str) -> str | None:
    """The key's value for a payload: a dotted path into it, or a callable's result (None
    for a rule without a key)."""
    if key is None:
        return None
    if callable(key):
        value = key(payload)
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{what}: the key callable must return a str")
        return value
    node = payload_at(payload, key)
    if node is _MISSING:
        raise InvalidArgumentError(f"{what}: the payload has no {key!r}")
    if isinstance(node, str):
        return node
    return json.dumps(node, sort_keys=True, separators=(",", ":"), default=str)


def payload_at(payload: Any, path: str) -> Any:
    """The value at a dotted path in nested dicts, or the _MISSING marker."""
    node = payload
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def key_id(value: str | None) -> str:
    """A key value as it appears in Redis key names (hashed when long or unusual); `*` for
    a rule without a key (one for the whole job)."""
    if value is None:
        return "*"
    if _SAFE_ID.match(value):
        return value
    return "#" + hashlib.sha1(value.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Flow:
    """The flow-control rules of one job."""

    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    singleton: Singleton | None = None
    cancel_on: tuple[CancelOn, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(
            self.concurrency
            or self.throttle
            or self.rate_limit
            or self.debounce
            or self.singleton
            or self.cancel_on
        )

    def plan(self, job: str, payload: Any, match_key: MatchKeyFn, priority: int = 0) -> str:
        """The run's plan as JSON for the start script ('' when the job has no rules and
        `priority` is 0; the priority goes in the plan only for runs started by events)."""
        if not self and not priority:
            return ""
        out: dict[str, Any] = {"p": priority} if priority else {}
        if self.concurrency:
            ids = [
                f"{i}:{key_id(key_value(c.key, payload, 'Concurrency key'))}"
                for i, c in enumerate(self.concurrency)
            ]
            slots = [[sid, c.limit] for sid, c in zip(ids, self.concurrency, strict=True)]
            group = job + "/" + "/".join(ids)
            if len(group) > 200:
                group = job + "/#" + hashlib.sha1(group.encode()).hexdigest()
            out["g"], out["s"] = group, slots
        if (t := self.throttle) is not None:
            out.setdefault("g", job)  # take checks its runs' throttle (groups other than 0)
            k = key_id(key_value(t.key, payload, "Throttle key"))
            out["t"] = [k, millis(t.period), t.limit, t.burst]
        if (r := self.rate_limit) is not None:
            k = key_id(key_value(r.key, payload, "RateLimit key"))
            out["r"] = [k, millis(r.period), r.limit]
        if (d := self.debounce) is not None:
            k = key_id(key_value(d.key, payload, "Debounce key"))
            out["d"] = [k, millis(d.period), millis(d.timeout) if d.timeout is not None else 0]
        if (s := self.singleton) is not None:
            out["o"] = [key_id(key_value(s.key, payload, "Singleton key")), s.mode]
        if self.cancel_on:
            out["c"] = [self._cancel_entry(c, payload, match_key) for c in self.cancel_on]
        return json.dumps(out, separators=(",", ":"))

    @staticmethod
    def _cancel_entry(c: CancelOn, payload: Any, match_key: MatchKeyFn) -> list[Any]:
        match: dict[str, Any] = {}
        for ev_path, pl_path in c.pairs():
            value = payload_at(payload, pl_path)
            if value is _MISSING:
                raise InvalidArgumentError(f"CancelOn match: the payload has no {pl_path!r}")
            match[ev_path] = value
        shape, vkey = match_key(match)
        timeout = millis(c.timeout) if c.timeout is not None else -1
        return [c.event, shape, vkey, timeout]


def make_flow(
    concurrency: Concurrency | Sequence[Concurrency] | None = None,
    throttle: Throttle | None = None,
    rate_limit: RateLimit | None = None,
    debounce: Debounce | None = None,
    singleton: Singleton | None = None,
    cancel_on: CancelOn | Sequence[CancelOn] | None = None,
) -> Flow:
    """Check each option's type and build a job's Flow."""
    conc = _many(concurrency, Concurrency, "concurrency")
    cancels = _many(cancel_on, CancelOn, "cancel_on")
    for value, cls, name in (
        (throttle, Throttle, "throttle"),
        (rate_limit, RateLimit, "rate_limit"),
        (debounce, Debounce, "debounce"),
        (singleton, Singleton, "singleton"),
    ):
        if value is not None and not isinstance(value, cls):
            raise InvalidArgumentError(f"{name} must be a {cls.__name__} or None")
    return Flow(conc, throttle, rate_limit, debounce, singleton, cancels)


def _many(value: Any, cls: type[Any], name: str) -> tuple[Any, ...]:
    if value is None:
        return ()
    items: Any = [value] if isinstance(value, cls) else value
    if not isinstance(items, Sequence) or not all(isinstance(i, cls) for i in items):
        raise InvalidArgumentError(f"{name} must be a {cls.__name__} or a list of them")
    return tuple(items)
