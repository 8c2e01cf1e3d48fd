"""The script of events: record one, resume its waiters, start its jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from ...errors import RedisUnavailableError, StaleDefinitionsError, from_redis_error
from .door import (
    CONNECTION_ERRORS,
    Door,
    ScriptCall,
    SendReply,
    _str,
    cluster_room,
    unavailable,
)
from .requests import SendEventRequest


def send_reply(raw: Any) -> SendReply:
    """send_event's reply as a SendReply."""
    duplicate, resumed, started, cancelled = raw
    return SendReply(
        bool(duplicate),
        [_str(r) for r in resumed],
        [_str(r) for r in started],
        [_str(r) for r in cancelled],
    )


class EventScripts(Door):
    """The script of events."""

    def send_event_call(self, q: SendEventRequest, leg: bool = False) -> ScriptCall:
        """send_event on this partition. A `leg` (one partition's part of a send when the
        namespace has several) starts only q.local_triggers: the stored triggers (on the
        namespace's tag) are not read."""
        k = self.keys
        keys: list[str] = [k.event_seen(q.event_id), k.event_log(q.name), k.event_data(q.name)]
        keys += [k.event_shapes(q.name), k.triggers(q.name), k.event_names()]
        args: list[Any] = [k.prefix, q.name, q.event_id, q.encoded, q.flat_json, q.payload]
        args += [q.dedupe_ms]
        args += [q.log_ms, json.dumps(q.local_triggers), q.call_token]
        args += [json.dumps(q.fields) if q.fields else "", q.retention_ms or 86_400_000]
        args += [json.dumps(q.plans), q.rev]
        if leg:
            args.append("1")
        return ScriptCall("send_event", "", keys, args)

    async def send_event(self, request: SendEventRequest, leg: bool = False) -> SendReply:
        """Record an event once; resume matching waiters; start triggered jobs (with the
        hook `fields`, {"x:<name>": value}, stored on each started run, and `plans`: the
        flow-control plan JSON of local triggered jobs, see flow.py); cancel runs whose
        CancelOn rules match. `leg`: as send_event_call."""
        c = self.send_event_call(request, leg)
        return send_reply(await self.call(c.script, c.keys, c.args))


async def send_legs(
    redis: Any, legs: Sequence[tuple[EventScripts, SendEventRequest]]
) -> list[SendReply]:
    """send_event on several partitions, each a leg (EventScripts.send_event_call): on
    Redis in one pipeline; on a RedisCluster as concurrent EVALSHA calls, each routed to
    its partition's node (a cluster pipeline would send every script's text). Every leg
    runs; then StaleDefinitionsError when any leg was stale, else the first error."""
    calls = [(door, door.send_event_call(request, leg=True)) for door, request in legs]
    results: list[Any]
    if isinstance(redis, RedisCluster):
        room = cluster_room(redis)  # shared by every fan-out on this client

        async def leg(door: EventScripts, c: ScriptCall) -> Any:
            async with room:
                return await door.call(c.script, c.keys, c.args)

        results = await asyncio.gather(*(leg(d, c) for d, c in calls), return_exceptions=True)
    else:
        async with redis.pipeline(transaction=False) as pipe:
            for door, c in calls:
                await door.queue_call(pipe, c.script, c.keys, c.args)
            try:
                results = await pipe.execute(raise_on_error=False)
            except RedisUnavailableError:
                raise
            except CONNECTION_ERRORS as exc:
                raise unavailable(exc) from exc
    errors = [
        from_redis_error(r) if isinstance(r, ResponseError) else r
        for r in results
        if isinstance(r, BaseException)
    ]
    for error in errors:
        if isinstance(error, StaleDefinitionsError):
            raise error
    if errors:
        raise errors[0]
    return [send_reply(r) for r in results]


def leg_of_entry(fields: Mapping[bytes, bytes]) -> tuple[int, SendEventRequest]:
    """(partition, send_event leg) of an outbox entry 'event' (lua/transact.lua writes it:
    a transactional step's event, for a partition other than the commit's)."""
    f = {k.decode(): v for k, v in fields.items()}
    text = {k: v.decode() for k, v in f.items() if k not in ("bytes", "payload")}
    request = SendEventRequest(
        name=text["name"],
        event_id=text["id"],
        encoded=f["bytes"],
        flat_json=text["flat"],
        payload=f["payload"],
        dedupe_ms=int(text["dedupe"]),
        log_ms=int(text["log"]),
        local_triggers=json.loads(text["triggers"]),
        call_token=text["token"],
        fields=json.loads(text["fields"]) if text["fields"] else {},
        retention_ms=int(text["keep"]),
        plans=json.loads(text["plans"]),
    )
    return int(text["part"]), request
