"""Scripts of a running attempt and of run control: steps, waits, cancel, retry, bulk."""

from __future__ import annotations

import json
from typing import Any

from .door import Door, ParkReply, WaitReply, _str


class RunScripts(Door):
    """Scripts of a running attempt and of run control: steps, waits, cancel, retry, bulk."""

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

    async def sleep(
        self, run_id: str, token: str, step: str, rel_ms: int, until_ms: int, record: bytes,
        park: bool,
    ) -> WaitReply:  # fmt: skip
        """Register a timer as a pending wait (parking the run at once when `park`), or
        record the step when already due."""
        k = self.keys
        args = [k.prefix, run_id, token, step, rel_ms, until_ms, record, int(park)]
        return _wait_reply(await self.call("sleep", [k.run(run_id)], args))

    async def wait_event(
        self, run_id: str, token: str, step: str, event: str, shape: str, values_key: str,
        timeout_ms: int, lookback_ms: int, timed_out_record: bytes, received_prefix: bytes,
        park: bool,
    ) -> WaitReply:  # fmt: skip
        """Match a recent event, or register a pending wait for one (parking when `park`)."""
        k = self.keys
        keys = [
            k.run(run_id), k.event_log(event), k.event_data(event), k.event_shapes(event),
            k.event_waiters(event, shape, values_key),
        ]  # fmt: skip
        args = [
            k.prefix, run_id, token, step, event, shape, values_key, timeout_ms, lookback_ms,
            timed_out_record, received_prefix, int(park),
        ]  # fmt: skip
        return _wait_reply(await self.call("wait_event", keys, args))

    async def invoke(
        self, run_id: str, token: str, step: str, job: str, queue: str, child_id: str,
        payload: bytes, timeout_ms: int, idem_ttl_ms: int, records: tuple[bytes, bytes, bytes],
        fields: dict[str, str] | None = None, park: bool = False,
    ) -> WaitReply:  # fmt: skip
        """Start a child run once per (parent, step) and register a pending wait for it
        (parking the parent when `park`). records: (timed-out record, completed-record
        prefix, failed-record prefix); fields: hook fields {"x:<name>": value} for the
        child."""
        k = self.keys
        idem = k.idem(job, f"invoke:{run_id}:{step}")
        args = [k.prefix, run_id, token, step, job, queue, child_id, payload, timeout_ms,
                idem_ttl_ms, *records, json.dumps(fields) if fields else "", int(park)]  # fmt: skip
        return _wait_reply(await self.call("invoke", [k.run(run_id), idem], args))

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

    async def retry(self, run_id: str) -> bool:
        """Make a failed or cancelled run ready again; False when unknown.
        InvalidRunStateError when it is neither."""
        k = self.keys
        return bool(await self.call("retry", [k.run(run_id)], [k.prefix, run_id]))

    async def bulk(
        self, index: str, action: str, status: str, job: str, created_ms: tuple[int, int],
        cursor: tuple[str, str, str], limit: int, reason: str, retention_ms: int,
        budget_us: int,
    ) -> tuple[int, tuple[str, str] | None, str]:  # fmt: skip
        """One batch of cancel_runs/retry_runs over the status index `index`: at most
        `limit` runs, stopping early after `budget_us` of server time. created_ms: (after,
        before), -1 for none; cursor: (score, run id, upto), "" to begin and for upto
        "now". Returns (runs changed, the next (score, run id) or None when the pass is
        over, upto)."""
        args = [self.keys.prefix, action, status, job, created_ms[0], created_ms[1], *cursor,
                limit, reason, retention_ms, budget_us]  # fmt: skip
        changed, score, last, upto = await self.call("bulk", [index], args)
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

    # events


def _wait_reply(reply: list[Any]) -> WaitReply:
    """A wait script's reply: [outcome, record or child, child]."""
    outcome = _str(reply[0])
    if outcome == "done":
        return WaitReply(outcome, reply[1], _str(reply[2]) if len(reply) > 2 else None)
    return WaitReply(outcome, None, _str(reply[1]) if len(reply) > 1 else None)
