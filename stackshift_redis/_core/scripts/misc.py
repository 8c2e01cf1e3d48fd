"""Scripts of events, queue statistics, state and schedules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .door import Door, DueSchedule, QueueStats, SendReply, _str


class MiscScripts(Door):
    """Scripts of events, queue statistics, state and schedules."""

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

    # metrics
    async def queue_stats(self, queues: Sequence[str]) -> tuple[int, list[QueueStats]]:
        """(live workers, per queue its gauges): `queues` plus those of the published
        job map, in one call."""
        k = self.keys
        reply = await self.call("queue_stats", [k.jobs(), k.workers()], [k.prefix, *queues])
        stats = [QueueStats(_str(q[0]), int(q[1]), int(q[2]), int(q[3]), int(q[4]))
                 for q in reply[1:]]  # fmt: skip
        return int(reply[0]), stats

    # state
    async def state_incr(self, name: str, amount: int, ttl_ms: int) -> int:
        """Add to a counter (TTL only on creation). InvalidArgumentError if not an int."""
        return int(await self.call("state_incr", [self.keys.state(name)], [amount, ttl_ms, name]))

    async def lock_extend(self, name: str, token: str, ttl_ms: int) -> bool:
        """Reset a lock's TTL while it holds `token`."""
        return bool(await self.call("lock_extend", [self.keys.lock(name)], [token, ttl_ms]))

    async def lock_release(self, name: str, token: str) -> bool:
        """Delete a lock while it holds `token`."""
        return bool(await self.call("lock_release", [self.keys.lock(name)], [token]))

    # schedules
    async def upsert_schedule(
        self, name: str, job: str, queue: str, payload: bytes, cron: str, every_ms: int,
        timezone: str, signature: str, overlap: str, catchup: str, jitter_ms: int,
        origin: str, next_ms: int,
    ) -> tuple[bool, int, bool]:  # fmt: skip
        """Create or update a schedule: (created, next fire ms, paused)."""
        k = self.keys
        args = [name, job, queue, payload, cron, every_ms, timezone, signature, overlap,
                catchup, jitter_ms, origin, next_ms]  # fmt: skip
        r = await self.call("upsert_schedule", [k.schedule(name), k.schedules()], args)
        return bool(r[0]), int(r[1]), bool(r[2])

    async def due_schedules(self, limit: int) -> tuple[int, int, list[DueSchedule]]:
        """(server now ms, ms until the next later schedule or -1, schedules due now)."""
        k = self.keys
        r = await self.call("due_schedules", [k.schedules()], [k.prefix, limit])
        due: list[DueSchedule] = []
        for i in range(2, len(r), 9):
            f = [_str(v) if v else "" for v in r[i : i + 9]]
            due.append(DueSchedule(f[0], int(f[1]), f[2], f[3], f[4], int(f[5] or 0),
                                   f[6] or "UTC", f[7] or "latest", int(f[8] or 0)))  # fmt: skip
        return int(r[0]), int(r[1]), due

    async def fire_schedule(
        self, due: DueSchedule, new_next_ms: int, ticks: Sequence[tuple[int, str, int]],
        idem_ttl_ms: int, retention_ms: int,
    ) -> tuple[list[str], int] | None:  # fmt: skip
        """Fire ticks (tick ms, run id, jitter ms) and advance to `new_next_ms`, if `due` is
        still current: (created run ids, ticks skipped by overlap), or None (stale)."""
        k = self.keys
        keys = [k.schedule(due.name), k.schedules()]
        args: list[Any] = [k.prefix, due.name, due.next_ms, due.rev, new_next_ms, idem_ttl_ms,
                           retention_ms, len(ticks)]  # fmt: skip
        for tick, run_id, jitter in ticks:
            keys.append(k.idem(due.job, f"schedule:{due.name}:{tick}"))
            args += [tick, run_id, jitter]
        r = await self.call("fire_schedule", keys, args)
        if r[0] != b"fired":
            return None
        return [_str(i) for i in r[1]], int(r[2])

    async def trigger_schedule(self, name: str, run_id: str) -> bool:
        """Start a run of the schedule now; False when there is no such schedule."""
        k = self.keys
        return bool(await self.call("trigger_schedule", [k.schedule(name)],
                                    [k.prefix, name, run_id]))  # fmt: skip

    async def control_schedule(self, name: str, op: str, next_ms: int = 0, rev: str = "") -> int:
        """pause | resume | delete: 1 done, 0 no such schedule, -1 changed since `rev`."""
        k = self.keys
        args = [name, op, next_ms, rev]
        return int(await self.call("control_schedule", [k.schedule(name), k.schedules()], args))
