"""Events: sending (with dedupe, correlation and on_event triggers) and match encoding.

A waiter's `match` {path: value} becomes a *shape* (its sorted paths joined by ',') and a
*values key* (sha1 of the canonical JSON of the values, joined by \\x1f). An event's data
is flattened to {path: canonical JSON} so lua/send_event.lua finds the waiters of each
shape by one set lookup: the cost grows with shapes and matches, not with waiters.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .._core import clock
from .._core.keys import check_name
from .._core.namespace import Namespace
from .._core.partitions import route
from .._core.records import Event, SendEventResult, from_ms
from .._core.routing import pick_partition
from .._core.scripts import SendEventRequest, SendReply, send_legs
from .._core.serializer import dumps_checked
from ..errors import InvalidArgumentError, StaleDefinitionsError

PATH_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
MAX_PATHS = 8
MAX_FLAT = 1000
MAX_DEPTH = 16
STALE_TRIES = 5  # see starting.py
Scalar = str | int | float | bool | None


def canonical(value: Any) -> str:
    """The JSON text a match value is compared by (1 and 1.0 are equal; True is not 1)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def match_key(match: Mapping[str, Any]) -> tuple[str, str]:
    """(shape, values key) of a wait_for_event match."""
    if not isinstance(match, Mapping) or len(match) > MAX_PATHS:
        raise InvalidArgumentError(f"match must be a dict of at most {MAX_PATHS} paths")
    for path, value in match.items():
        if not isinstance(path, str) or not PATH_RE.match(path):
            raise InvalidArgumentError(f"invalid match path {path!r}: use dotted names")
        if not _is_scalar(value):
            raise InvalidArgumentError(f"match value at {path!r} must be a scalar")
    paths = sorted(match)
    return ",".join(paths), values_key([canonical(match[p]) for p in paths])


def values_key(canonical_values: list[str]) -> str:
    """sha1 hex of the canonical values joined by \\x1f (as lua/lib/values_key.lua)."""
    return hashlib.sha1("\x1f".join(canonical_values).encode()).hexdigest()


def flatten(data: Any) -> dict[str, str]:
    """{dotted path: canonical JSON} for every scalar reachable through dict keys."""
    out: dict[str, str] = {}
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack and len(out) < MAX_FLAT:
        prefix, node, depth = stack.pop()
        if not isinstance(node, Mapping) or depth >= MAX_DEPTH:
            continue
        for k, v in node.items():
            if not isinstance(k, str) or not PATH_RE.match(k):
                continue
            path = f"{prefix}{k}"
            if _is_scalar(v):
                out[path] = canonical(v)
            elif isinstance(v, Mapping):
                stack.append((path + ".", v, depth + 1))
    return out


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def decode_event(value: Any) -> Event | None:
    """An Event from its stored form (a dict), or None."""
    if not isinstance(value, Mapping):
        return None
    ts = from_ms(value.get("ts"))
    assert ts is not None
    return Event(name=value["name"], id=value["id"], data=value.get("data"), ts=ts)


def merge_replies(replies: list[SendReply]) -> SendReply:
    """One reply for the legs of a send: a duplicate when every leg was."""
    return SendReply(
        duplicate=all(r.duplicate for r in replies),
        resumed=[r for reply in replies for r in reply.resumed],
        started=[r for reply in replies for r in reply.started],
        cancelled=[r for reply in replies for r in reply.cancelled],
    )


class EventBus:
    """Sends events in one namespace."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns

    def encode(self, name: str, data: Any, event_id: str) -> bytes:
        """The stored form of an event (a step result when a waiting run receives it)."""
        ts = clock.now_ms()
        return self._ns.serializer.dumps({"name": name, "id": event_id, "data": data, "ts": ts})

    async def send(self, name: str, data: Any, event_id: str | None = None) -> SendEventResult:
        """Record the event once per id; resume matching waiters; start on_event jobs.
        With partitions this is one call per partition (_send_legs), not one atomic call:
        a send that failed part-way is completed by sending again with the same id."""
        ns = self._ns
        request = self.prepare(name, data, event_id)
        for tries in range(STALE_TRIES):  # the rules of the runs it starts: published ones
            rev = await ns.definitions.load(force=tries > 0)
            request = replace(request, plans=self._plans(name, data), rev=rev)
            try:
                if ns.partitions == 1:
                    reply = await ns.scripts.send_event(request)
                else:
                    reply = await self._send_legs(request, data)
                break
            except StaleDefinitionsError:
                continue
        else:
            raise StaleDefinitionsError(f"event {name!r}: definitions kept changing")
        if ns.hooks and not reply.duplicate:
            ns.hooks.event_sent(name, reply.resumed, reply.started)
        return SendEventResult(
            id=request.event_id,
            resumed=reply.resumed,
            started=reply.started,
            duplicate=reply.duplicate,
            cancelled=reply.cancelled,
        )

    async def _send_legs(self, request: SendEventRequest, data: Any) -> SendReply:
        """With partitions > 1: send_event on every partition (send_legs). A run waits
        (and looks back) on its own partition, so every partition records the event, once
        per id (its own event_seen; a re-send with the id completes a send cut short).
        Each run the event triggers starts on one leg: its flow-control key's partition,
        else the event id's (the same on a re-send of the id, so it starts once)."""
        ns = self._ns
        legs = await self.leg_requests(request, data)
        replies = await send_legs(ns.redis, [(ns.part_scripts(p), q) for p, q in enumerate(legs)])
        return merge_replies(replies)

    async def leg_requests(self, request: SendEventRequest, data: Any) -> list[SendEventRequest]:
        """With partitions > 1: the send_event call of each partition's leg (index: the
        partition), each given the triggered runs it starts (and their plans)."""
        ns, q = self._ns, request
        jobs = dict(q.local_triggers)  # registered here; then those of live workers
        stored = await ns.redis.hgetall(ns.keys.triggers(q.name))
        for job, queue in stored.items():
            jobs.setdefault(_text(job), _text(queue))
        rules = ns.definitions.triggered(q.name)
        home = route(q.event_id, ns.partitions)  # for runs no flow-control key routes
        starts: list[dict[str, str]] = [{} for _ in range(ns.partitions)]
        for job, queue in jobs.items():
            flow = rules[job].flow if job in rules else None
            starts[pick_partition(ns.partitions, job, flow, data, near=home)][job] = queue
        return [
            replace(
                q,
                local_triggers=starts[p],
                plans={j: plan for j, plan in q.plans.items() if j in starts[p]},
            )
            for p in range(ns.partitions)
        ]

    def _plans(self, name: str, data: Any) -> dict[str, str]:
        """Flow-control plans of the runs the event starts, from the definitions loaded
        (published, else local: _core/definitions.py); InvalidArgumentError on bad data."""
        plans: dict[str, str] = {}
        for job, r in self._ns.definitions.triggered(name).items():
            plan = r.plan(data, match_key, r.priority)
            if plan:
                plans[job] = plan
        return plans

    def prepare(self, name: str, data: Any, event_id: str | None = None) -> SendEventRequest:
        """The send_event call of an event, checked (nothing is written on bad input); a
        transactional step's commit sends it too (lua/lib/emit_event.lua), with the plans of
        the definitions this process has loaded."""
        check_name("event", name)
        if event_id is None:
            event_id = uuid.uuid4().hex
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 256:
            raise InvalidArgumentError(f"invalid event id {event_id!r}")
        ns = self._ns
        payload = dumps_checked(ns.serializer, data, "event data")  # no Redis call
        encoded = self.encode(name, data, event_id)
        plans = self._plans(name, data)
        fields: dict[str, str] = {}
        if ns.hooks:  # for the runs it starts (on_event jobs), e.g. the caller's trace
            fields = {f"x:{k}": v for k, v in ns.hooks.start_fields("", "").items()}
        return SendEventRequest(
            name=name,
            event_id=event_id,
            encoded=encoded,
            flat_json=json.dumps(flatten(data)),
            payload=payload,
            dedupe_ms=ns.settings.event_dedupe_ms,
            log_ms=ns.settings.event_log_ms,
            local_triggers=ns.registry.triggers(name),
            call_token=uuid.uuid4().hex,
            fields=fields,
            retention_ms=ns.settings.retention_ms,
            plans=plans,
        )
