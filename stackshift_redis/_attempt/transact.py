"""Transactional steps (`ctx.step.transact`): state writes, events, starts and the step's
result commit together, once.

`fn(tx, ...)` runs against a `StateTx` (statetx.py): reads come from Redis and are
remembered with the bytes seen, everything else is buffered. Then one `transact` script
call (lua/transact.lua) checks the lease, checks that every key read still holds what
was read (optimistic concurrency: by value, so a key that expired or was rewritten counts
as changed), and applies the writes, events and starts and stores the step record. On a
conflict `fn` runs again with fresh reads (after a short jittered pause), at most
`max_conflicts` times.

Exactly once: nothing is written before the commit (a crash before it leaves nothing);
the commit is one script (a crash after it finds the step recorded on the next attempt,
which returns the stored result); a re-sent commit (lost reply, redis-py's retry) finds
its step recorded and applies nothing; a worker that lost its lease commits nothing.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

from .._client.events import EventBus
from .._client.starting import Starter
from .._core.records import read_step, step_completed
from .._core.scripts import TransactRequest
from .._core.serializer import round_trip
from ..errors import NonRetriableError, PayloadError, TransactionConflictError
from .execution import Execution
from .statetx import StateTx
from .tx_partition import (
    commit_partition,
    event_legs,
    record_remote,
    send_other_legs,
    split_starts,
    start_far,
)

# tests: "before_commit", "after_commit", "event_legs", "far_starts"
FAULT: Callable[[str], None] | None = None
CONFLICT = object()  # commit(): a key read changed, run fn again


def pause(conflicts: int) -> float:
    """Seconds to wait before re-running `fn` after its `conflicts`-th conflict: jittered,
    doubling from 10 ms up to 0.5 s, so contenders of a hot key spread out instead of
    colliding again in lockstep."""
    return random.uniform(0, min(0.5, 0.005 * 2**conflicts))


def new_tx(ex: Execution, key: str) -> StateTx:
    """A fresh StateTx for step `key` of this attempt's run."""
    return StateTx(ex.state, EventBus(ex.ns), f"{ex.run_id}:{key}")


def check_conflicts(max_conflicts: object) -> int:
    """`max_conflicts`, checked (a non-negative int)."""
    if not isinstance(max_conflicts, int) or isinstance(max_conflicts, bool) or max_conflicts < 0:
        raise NonRetriableError(f"max_conflicts must be an int >= 0, not {max_conflicts!r}")
    return max_conflicts


async def commit(ex: Execution, key: str, tx: StateTx, value: Any) -> Any:
    """Commit `fn`'s outcome: the value as later attempts see it, or CONFLICT."""
    try:
        data, stored = round_trip(ex.ns.serializer, value, f"step {key!r} result")
    except PayloadError as exc:
        raise NonRetriableError(str(exc)) from exc
    settings = ex.ns.settings
    at = commit_partition(ex, key, tx)
    starts, far = split_starts(ex, at, tuple(await tx.prepared_starts(Starter(ex.ns), at)))
    remote = at != ex.ns.part_of(ex.run_id)
    commit_token = uuid.uuid4().hex
    events, legs = await event_legs(ex, tx, at, commit_token)
    request = TransactRequest(
        run_id=ex.run_id,
        token=ex.token,
        step=key,
        record=step_completed(data),
        commit_token=commit_token,
        reads=tuple(tx.reads.items()),
        writes=tuple((n, *w) for n, w in tx.writes.items()),
        events=events,
        starts=starts,
        summary=tx.summary(),
        retention_ms=settings.retention_ms,
        dedupe_ms=settings.event_dedupe_ms,
        log_ms=settings.event_log_ms,
        legs=legs,
        far_starts=far,
    )
    if FAULT is not None:
        FAULT("before_commit")
    scripts = ex.ns.part_scripts(at)
    reply = await (scripts.transact(request, remote=True) if remote else scripts.transact(request))
    if FAULT is not None:
        FAULT("after_commit")
    if remote and reply.outcome != "conflict":
        record = reply.record if reply.record is not None else request.record
        summary = reply.summary or request.summary  # (with the runs started)
        await record_remote(ex, key, record, request.commit_token, summary)
    if reply.outcome == "conflict":
        return CONFLICT
    if reply.outcome == "done":  # committed by a call whose reply was lost
        assert reply.record is not None
        rec = read_step(reply.record, ex.ns.serializer)
        ex.steps[key] = rec
        return rec.get("result")
    ex.steps[key] = {"status": "completed", "result": stored}
    if reply.cancel:
        ex.cancel_requested = True
    if far:  # partitions: the runs the commit left in its outbox, now
        await start_far(ex, request, reply.made, FAULT)
    sent = reply.events
    if legs:  # partitions: the legs the commit left in its outbox, now
        sent = await send_other_legs(ex, request, sent, FAULT)
    if ex.ns.hooks:  # as send_event tells them
        for e, (duplicate, resumed, started) in zip(tx.events, sent, strict=False):
            if not duplicate:
                ex.ns.hooks.event_sent(e.name, resumed, started)
    return stored


async def conflicted(ex: Execution, key: str, max_conflicts: int) -> None:
    """Too many conflicts: the step fails (recorded) with TransactionConflictError."""
    exc = TransactionConflictError(
        f"step {key!r}: keys it read changed before each of {max_conflicts + 1} commits"
    )
    await ex.record_failure(key, exc)
    raise exc
