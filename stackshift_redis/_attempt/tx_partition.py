"""Where a transactional step commits when the namespace has partitions.

A commit is one script on one partition. Its state must therefore live on one partition:
the run's (the usual commit, fenced by the lease), or another one (a remote commit,
lua/transact.lua: the record is kept there and copied to the run, at once by the caller
and durably through the outbox). A name's braced part routes it like a partition_key
(`{customer:42}:balance`), which is how related values are kept together.

An event goes as one leg per partition, as send_event (_client/events.py): the commit
sends the leg of its own partition and writes every other leg in its outbox (an entry
'event', applied by the relay); the caller applies those legs at once too. Each leg is
deduplicated by the event id and the call token <commit token>:<e>, so it counts once.

A start (`tx.start`) goes on its run's partition, as `start`: one its flow-control or
idempotency key routes to another partition than the commit's is an outbox entry
'tx_start' written by the commit, applied there once (lua/apply_outbox.lua keeps its
outcome), at once by the caller and durably by the relay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace

from .._client.events import EventBus, merge_replies
from .._core.scripts import SendEventRequest, StartRequest, TransactRequest, send_legs
from ..errors import NonRetriableError
from .execution import Execution
from .statetx import StateTx

log = logging.getLogger("stackshift.worker")
Legs = tuple[tuple[tuple[int, SendEventRequest], ...], ...]
Starts = tuple[tuple[StartRequest, tuple[str, str | None, bytes, str]], ...]
Sent = tuple[tuple[bool, list[str], list[str]], ...]  # per event: duplicate, resumed, started


def _refuse(ex: Execution, key: str, what: str) -> NonRetriableError:
    return NonRetriableError(
        f"transactional step {key!r} of run {ex.run_id}: with partitions, {what} "
        "(docs/guides/scaling-out.md)"
    )


def commit_partition(ex: Execution, key: str, tx: StateTx) -> int:
    """The partition the step commits on: its state's, else its run's (0 with one)."""
    ns = ex.ns
    if ns.partitions == 1:
        return 0
    parts = {ns.part_of_name(n) for n in {*tx.reads, *tx.writes}}
    if len(parts) > 1:
        names = ", ".join(repr(n) for n in sorted({*tx.reads, *tx.writes}))
        raise _refuse(
            ex,
            key,
            f"the state of one commit must share a partition, and {names} do not: give "
            "them one braced part, e.g. '{customer:42}:balance' and '{customer:42}:orders'",
        )
    return parts.pop() if parts else ns.part_of(ex.run_id)


def split_starts(ex: Execution, at: int, starts: Starts) -> tuple[Starts, Starts]:
    """(starts of runs on partition `at`, made by the commit; the others, sent)."""
    here = tuple(s for s in starts if ex.ns.part_of(s[1][0]) == at)
    return here, tuple(s for s in starts if ex.ns.part_of(s[1][0]) != at)


async def start_far(
    ex: Execution, request: TransactRequest, made: int, fault: Callable[[str], None] | None
) -> None:
    """Apply at once the starts a commit wrote to its outbox (the runs start now, not at
    the next relay tick). Should this fail, the relay applies them (the commit is done)."""
    ns = ex.ns
    try:
        if fault is not None:
            fault("far_starts")
        for r, (run_id, idem, payload, plan) in request.far_starts:
            fields: list[bytes] = [b"job", r.job.encode(), b"queue", r.queue.encode()]
            fields += [b"idem", b"1" if idem is not None else b"0", b"key", (idem or "").encode()]
            fields += [b"payload", payload, b"plan", plan.encode(), b"delay", b"%d" % r.delay_ms]
            fields += [b"at", b"%d" % r.at_ms, b"made", b"%d" % made]
            fields += [b"ttl", b"%d" % r.idem_ttl_ms, b"fields", _fields_json(r).encode()]
            fields += [b"ver", b"%d" % r.version]
            await ns.scripts_of(run_id).apply_outbox(
                "tx_start", run_id, fields, ns.settings.retention_ms
            )
    except Exception as exc:  # the outbox holds them: the relay applies them
        log.warning("run %s: starts of a commit left to the relay: %r", ex.run_id, exc)


def _fields_json(r: StartRequest) -> str:
    return json.dumps(dict(r.fields)) if r.fields else ""


async def record_remote(ex: Execution, key: str, record: bytes, token: str, summary: str) -> None:
    """Record a step committed on another partition on its run now (the outbox entry the
    commit wrote does the same, later, should this process die first)."""
    fields = [b"step", key.encode(), b"record", record, b"token", token.encode()]
    fields += [b"summary", summary.encode()]
    await ex.ns.scripts_of(ex.run_id).apply_outbox(
        "tx_record", ex.run_id, fields, ex.ns.settings.retention_ms
    )


async def event_legs(
    ex: Execution, tx: StateTx, at: int, token: str
) -> tuple[tuple[SendEventRequest, ...], Legs]:
    """The commit's events (with one partition: as buffered; with more: the legs of
    partition `at`) and, with more, each event's (partition, leg) for the others."""
    if ex.ns.partitions == 1 or not tx.events:
        return tuple(tx.events), ()
    bus = EventBus(ex.ns)
    here: list[SendEventRequest] = []
    others: list[tuple[tuple[int, SendEventRequest], ...]] = []
    for e, (request, data) in enumerate(zip(tx.events, tx.event_data, strict=True), 1):
        legs = await bus.leg_requests(replace(request, call_token=f"{token}:{e}"), data)
        here.append(legs[at])
        others.append(tuple((p, leg) for p, leg in enumerate(legs) if p != at))
    return tuple(here), tuple(others)


async def send_other_legs(
    ex: Execution, request: TransactRequest, sent: Sent, fault: Callable[[str], None] | None
) -> Sent:
    """Apply at once the legs a commit wrote to its outbox (waiters on other partitions
    resume now, not at the next relay tick); `sent` merged with their outcomes. Should
    this fail, the relay applies them (the commit is done): `sent` is returned as it is."""
    ns = ex.ns
    calls = [(ns.part_scripts(p), leg) for legs in request.legs for p, leg in legs]
    try:
        if fault is not None:
            fault("event_legs")
        replies = iter(await send_legs(ns.redis, calls))
    except Exception as exc:  # the outbox holds them: the relay sends them
        log.warning("run %s: events of a commit left to the relay: %r", ex.run_id, exc)
        return sent
    out = []
    for (duplicate, resumed, started), legs in zip(sent, request.legs, strict=True):
        more = [next(replies) for _ in legs]
        m = merge_replies(more)
        out.append((duplicate and m.duplicate, resumed + m.resumed, started + m.started))
    return tuple(out)
