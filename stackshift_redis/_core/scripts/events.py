"""The script of events: record one, resume its waiters, start its jobs."""

from __future__ import annotations

import json
from typing import Any

from .door import Door, SendReply, _str
from .requests import SendEventRequest


class EventScripts(Door):
    """The script of events."""

    async def send_event(self, request: SendEventRequest) -> SendReply:
        """Record an event once; resume matching waiters; start triggered jobs (with the
        hook `fields`, {"x:<name>": value}, stored on each started run, and `plans`: the
        flow-control plan JSON of local triggered jobs, see flow.py); cancel runs whose
        CancelOn rules match."""
        k, q = self.keys, request
        keys: list[str] = [k.event_seen(q.event_id), k.event_log(q.name), k.event_data(q.name)]
        keys += [k.event_shapes(q.name), k.triggers(q.name), k.event_names()]
        args: list[Any] = [k.prefix, q.name, q.event_id, q.encoded, q.flat_json, q.payload]
        args += [q.dedupe_ms]
        args += [q.log_ms, json.dumps(q.local_triggers), q.call_token]
        args += [json.dumps(q.fields) if q.fields else "", q.retention_ms or 86_400_000]
        args += [json.dumps(q.plans), q.rev]
        duplicate, resumed, started, cancelled = await self.call("send_event", keys, args)
        return SendReply(
            bool(duplicate),
            [_str(r) for r in resumed],
            [_str(r) for r in started],
            [_str(r) for r in cancelled],
        )
