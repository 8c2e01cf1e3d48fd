"""Scripts of schedules: upsert, find the due ones, fire, trigger, pause/resume/delete."""

from __future__ import annotations

from typing import Any

from .door import Door, DueSchedule, _str
from .requests import FireScheduleRequest, UpsertScheduleRequest


class ScheduleScripts(Door):
    """Scripts of schedules."""

    async def upsert_schedule(self, request: UpsertScheduleRequest) -> tuple[bool, int, bool]:
        """Create or update a schedule: (created, next fire ms, paused)."""
        k, q = self.keys, request
        args: list[Any] = [q.name, q.job, q.queue, q.payload, q.cron, q.every_ms, q.timezone]
        args += [q.signature, q.overlap, q.catchup, q.jitter_ms, q.origin, q.next_ms]
        r = await self.call("upsert_schedule", [k.schedule(q.name), k.schedules()], args)
        return bool(r[0]), int(r[1]), bool(r[2])

    async def due_schedules(self, limit: int) -> tuple[int, int, list[DueSchedule]]:
        """(server now ms, ms until the next later schedule or -1, schedules due now)."""
        k = self.keys
        r = await self.call("due_schedules", [k.schedules()], [k.prefix, limit])
        due: list[DueSchedule] = []
        for i in range(2, len(r), 9):
            f = [_str(v) if v else "" for v in r[i : i + 9]]
            due.append(
                DueSchedule(
                    f[0],
                    int(f[1]),
                    f[2],
                    f[3],
                    f[4],
                    int(f[5] or 0),
                    f[6] or "UTC",
                    f[7] or "latest",
                    int(f[8] or 0),
                )
            )
        return int(r[0]), int(r[1]), due

    async def fire_schedule(self, request: FireScheduleRequest) -> tuple[list[str], int] | None:
        """Fire the ticks and advance the schedule, if `due` is still current: (created run
        ids, ticks skipped by overlap), or None (stale)."""
        k, q, due = self.keys, request, request.due
        keys: list[str] = [k.schedule(due.name), k.schedules()]
        args: list[Any] = [k.prefix, due.name, due.next_ms, due.rev, q.next_ms, q.retention_ms]
        args += [len(q.ticks), q.rev, q.plan]
        for tick, run_id, jitter in q.ticks:
            args += [tick, run_id, jitter]
        r = await self.call("fire_schedule", keys, args)
        if r[0] != b"fired":
            return None
        return [_str(i) for i in r[1]], int(r[2])

    async def trigger_schedule(self, name: str, run_id: str) -> bool:
        """Start a run of the schedule now; False when there is no such schedule."""
        k = self.keys
        return bool(
            await self.call("trigger_schedule", [k.schedule(name)], [k.prefix, name, run_id])
        )

    async def advance_schedule(
        self,
        name: str,
        last_run: str,
        due: DueSchedule | None = None,
        next_ms: int = 0,
        handled: int = 0,
    ) -> bool:
        """With partitions: advance the schedule `due` (if still current) to `next_ms`,
        recording `handled` (the newest tick) and `last_run` (''); without `due`, record a
        manual trigger's `last_run`. False when stale (or the schedule is gone)."""
        k = self.keys
        args: list[Any] = [name, "trigger", last_run, 0, "", 0, 0]
        if due is not None:
            args = [name, "fire", last_run, due.next_ms, due.rev, next_ms, handled]
        return bool(await self.call("advance_schedule", [k.schedule(name), k.schedules()], args))

    async def control_schedule(self, name: str, op: str, next_ms: int = 0, rev: str = "") -> int:
        """pause | resume | delete: 1 done, 0 no such schedule, -1 changed since `rev`."""
        k = self.keys
        args = [name, op, next_ms, rev]
        return int(await self.call("control_schedule", [k.schedule(name), k.schedules()], args))
