"""Scripts of a running attempt and of run control: steps, waits, cancel, retry, bulk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .door import Door, ParkReply, WaitReply, _str
from .requests import BulkRequest, InvokeRequest, SleepRequest, WaitEventRequest


class RunScripts(Door):
    """Scripts of a running attempt and of run control: steps, waits, cancel, retry, bulk."""

    async def list_runs(
        self, job: str, statuses: list[str], bounds: tuple[str, str], n: int
    ) -> list[tuple[str, str]]:
        """(run id, status) of up to `n` runs per status within the ZREVRANGEBYLEX bounds
        (high, low), of `job` ("" for any), read atomically (a read: no layout gate)."""
        k = self.keys
        keys = [
            k.leased_queues()
            if s == "running"
            else (k.ord_job_status(job, s) if job else k.ord_status(s))
            for s in statuses
        ]
        flat = await self.call("list_runs", keys, [k.prefix, job, *bounds, n, *statuses])
        return [(_str(flat[i]), _str(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def record_step(
        self, run_id: str, token: str, name: str, record: bytes, kind: str
    ) -> bool:
        """Store a step record; True when a cancel was requested for the run."""
        reply = await self.call(
            "record_step", [self.keys.run(run_id)], [run_id, token, name, record, kind]
        )
        return bool(reply)

    async def progress(self, run_id: str, token: str, value: bytes) -> None:
        """Record a running run's progress (LeaseLostError when no longer held)."""
        await self.call("progress", [self.keys.run(run_id)], [run_id, token, value])

    async def sleep(self, request: SleepRequest) -> WaitReply:
        """Register a timer as a pending wait (parking the run at once when `park`), or
        record the step when already due."""
        k, q = self.keys, request
        args = [k.prefix, q.run_id, q.token, q.step, q.rel_ms, q.until_ms, q.record, int(q.park)]
        return _wait_reply(await self.call("sleep", [k.run(q.run_id)], args))

    async def wait_event(self, request: WaitEventRequest) -> WaitReply:
        """Match a recent event, or register a pending wait for one (parking when `park`)."""
        k, q = self.keys, request
        keys: list[str] = [k.run(q.run_id), k.event_log(q.event), k.event_data(q.event)]
        keys += [k.event_shapes(q.event), k.event_waiters(q.event, q.shape, q.values_key)]
        args: list[Any] = [k.prefix, q.run_id, q.token, q.step, q.event, q.shape, q.values_key]
        args += [q.timeout_ms, q.lookback_ms, q.timed_out_record, q.received_prefix, int(q.park)]
        return _wait_reply(await self.call("wait_event", keys, args))

    async def invoke(self, request: InvokeRequest) -> WaitReply:
        """Start a child run once per (parent, step) and register a pending wait for it
        (parking the parent when `park`)."""
        k, q = self.keys, request
        idem = k.idem(q.job, f"invoke:{q.run_id}:{q.step}")
        args: list[Any] = [k.prefix, q.run_id, q.token, q.step, q.job, q.queue, q.child_id]
        args += [q.payload, q.timeout_ms, q.idem_ttl_ms, *q.records]
        args += [json.dumps(q.fields) if q.fields else "", int(q.park), q.rev, q.plan]
        return _wait_reply(await self.call("invoke", [k.run(q.run_id), idem], args))

    async def park(self, run_id: str, token: str, steps: list[str]) -> ParkReply:
        """Park the run until the first of `steps` (pending waits) settles, unless some
        have settled already: then their records (the attempt goes on)."""
        k = self.keys
        reply = await self.call("park", [k.run(run_id)], [k.prefix, run_id, token, *steps])
        if reply[0] == b"waiting":
            return ParkReply(True, {})
        if reply[0] == b"cancel":
            return ParkReply(False, {}, cancel=True)
        pairs = reply[1:]
        return ParkReply(False, {_str(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2)})

    # control
    async def cancel(self, run_id: str, reason: str, retention_ms: int) -> tuple[str, bool] | None:
        """Cancel a run: (status afterwards, whether this call changed it), None if unknown."""
        k = self.keys
        reply = await self.call("cancel", [k.run(run_id)], [k.prefix, run_id, reason, retention_ms])
        return (_str(reply[0]), bool(int(reply[1]))) if reply else None

    async def apply_outbox(
        self, action: str, run_id: str, fields: Sequence[bytes], retention_ms: int
    ) -> bool:
        """Apply an outbox entry of another partition to run `run_id` here (start, settle,
        cancel: lua/apply_outbox.lua); True when it changed something."""
        k = self.keys
        args = [k.prefix, action, run_id, retention_ms, *fields]
        return bool(await self.call("apply_outbox", [k.run(run_id)], args))

    async def retry(self, run_id: str) -> bool:
        """Make a failed or cancelled run ready again; False when unknown.
        InvalidRunStateError when it is neither."""
        k = self.keys
        return bool(await self.call("retry", [k.run(run_id)], [k.prefix, run_id]))

    async def bulk(self, request: BulkRequest) -> tuple[int, tuple[str, str] | None, str]:
        """One batch of cancel_runs/retry_runs: at most `limit` runs, stopping early after
        `budget_us` of server time. Returns (runs changed, the next (score, run id) or None
        when the pass is over, upto)."""
        q = request
        args: list[Any] = [self.keys.prefix, q.action, q.status, q.job, *q.created_ms, *q.cursor]
        args += [q.limit, q.reason, q.retention_ms, q.budget_us, q.order]
        changed, score, last, upto = await self.call("bulk", [q.index], args)
        nxt = (_str(score), _str(last)) if _str(score) else None
        return int(changed), nxt, _str(upto)

    async def replay(self, run_id: str, new_id: str, from_step: str, fields: dict[str, str]) -> int:
        """Start `new_id` as a replay of `run_id`; the number of step records copied (-1:
        it existed already). RunNotFoundError, InvalidArgumentError (unknown step)."""
        k = self.keys
        args = [k.prefix, run_id, new_id, from_step, json.dumps(fields) if fields else ""]
        reply = await self.call("replay", [k.run(run_id), k.run(new_id)], args)
        return int(reply[1])

    async def pause_queue(self, queue: str) -> bool:
        """Pause a queue; False when it was paused already."""
        k = self.keys
        return bool(await self.call("pause_queue", [k.queue_conf(queue), k.stream(queue)], []))

    async def resume_queue(self, queue: str, max_tickets: int = 200) -> bool:
        """Resume a paused queue and wake its workers; False when it was not paused."""
        k = self.keys
        keys, args = [k.queue_conf(queue), k.ring(queue)], [k.prefix, queue, max_tickets]
        return bool(await self.call("resume_queue", keys, args))

    async def watch(self, run_id: str) -> tuple[str, bytes | None, bytes | None] | None:
        """Mark a run as awaited; its (status, result, error) or None when unknown."""
        reply = await self.call("watch", [self.keys.run(run_id)], [])
        return (_str(reply[0]), reply[1], reply[2]) if reply else None


def _wait_reply(reply: list[Any]) -> WaitReply:
    """A wait script's reply: [outcome, record or child, child]."""
    outcome = _str(reply[0])
    if outcome == "done":
        return WaitReply(outcome, reply[1], _str(reply[2]) if len(reply) > 2 else None)
    return WaitReply(outcome, None, _str(reply[1]) if len(reply) > 1 else None)
