"""The script of events: record one, resume its waiters, start its jobs."""

from __future__ import annotations

import json

from .door import Door, SendReply, _str


class EventScripts(Door):
    """The script of events."""

    async def send_event(
        self, name: str, event_id: str, encoded: bytes, flat_json: str, payload: bytes,
        dedupe_ms: int, log_ms: int, local_triggers: dict[str, str], call_token: str,
        fields: dict[str, str] | None = None, retention_ms: int = 0,
        plans: dict[str, str] | None = None,
    ) -> SendReply:  # fmt: skip
        """Record an event once; resume matching waiters; start triggered jobs (with the
        hook `fields`, {"x:<name>": value}, stored on each started run, and `plans`: the
        flow-control plan JSON of local triggered jobs, see flow.py); cancel runs whose
        CancelOn rules match."""
        k = self.keys
        keys = [k.event_seen(event_id), k.event_log(name), k.event_data(name),
                k.event_shapes(name), k.triggers(name), k.event_names()]  # fmt: skip
        args = [k.prefix, name, event_id, encoded, flat_json, payload, dedupe_ms, log_ms,
                json.dumps(local_triggers), call_token,
                json.dumps(fields) if fields else "", retention_ms or 86_400_000,
                json.dumps(plans or {})]  # fmt: skip
        duplicate, resumed, started, cancelled = await self.call("send_event", keys, args)
        return SendReply(
            bool(duplicate), [_str(r) for r in resumed], [_str(r) for r in started],
            [_str(r) for r in cancelled],
        )  # fmt: skip
