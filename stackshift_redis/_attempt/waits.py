"""Durable waits inside a handler: sleep, wait_for_event, invoke. Each returns the step's
stored outcome, or registers a pending wait of the run and awaits it (see parking.py): the
waits of one gather park the run together, in one call, and the run resumes when the
first of them settles; the handler then runs from the top and settled steps return their
stored outcome. No worker slot is held while the run is parked."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from .._client.events import EventBus, decode_event, match_key
from .._core.definitions import Rules
from .._core.keys import check_name
from .._core.records import (
    Duration,
    Event,
    epoch_ms,
    millis,
    read_step,
    record_prefix,
    step_completed,
    step_failed,
)
from .._core.routing import pick_partition
from .._core.scripts import InvokeRequest, SleepRequest, WaitEventRequest, WaitReply
from .._core.serializer import dumps_checked
from ..errors import InvalidArgumentError, RunFailed, StaleDefinitionsError
from .execution import MISSING, Execution
from .parking import CancelRequested

STALE_TRIES = 5  # see _client/starting.py


def _none_record(ex: Execution) -> bytes:
    return step_completed(ex.ns.serializer.dumps(None))


def _stored(ex: Execution, key: str, rec: dict[str, Any]) -> Any:
    if rec["status"] == "completed":
        return rec.get("result")
    raise RunFailed(f"step {key!r}: {rec.get('error')}", run_id=ex.run_id, final=True)


async def _register(
    ex: Execution, key: str, kind: str, register: Callable[[bool], Awaitable[WaitReply]]
) -> dict[str, Any] | None:
    """Inside `parking.busy()` (entered where the wait began, so the other branches of a
    gather are seen at once): register wait step `key` unless an earlier attempt did, by
    `register(park)` (park: nothing else runs, so the call parks the run at once). The
    step's record when the wait is over already, else None."""
    parking = ex.parking
    parking.begin(key)
    if key in parking.registered:
        return None
    await ex.flush_patches()  # a patch answer is stored before any later step
    park = await parking.alone()
    parking.parking_calls += int(park)
    try:
        reply = await register(park)
    finally:
        parking.parking_calls -= int(park)
    if reply.parked:
        raise parking.parked_now(key, kind, here=reply.outcome == "waiting")
    if reply.outcome == "cancel":
        raise CancelRequested(f"run {ex.run_id} cancelled", run_id=ex.run_id)
    if reply.record is not None:
        return _keep(ex, key, reply.record)
    parking.registered.add(key)
    return None


async def _settled(ex: Execution, key: str, kind: str, rec: dict[str, Any] | None) -> Any:
    """The record of wait step `key` once it settles (see parking.py)."""
    return rec if rec is not None else _keep(ex, key, await ex.parking.settled(key, kind))


def _keep(ex: Execution, key: str, record: bytes) -> dict[str, Any]:
    rec = read_step(record, ex.ns.serializer)
    ex.steps[key] = rec
    ex.parking.registered.discard(key)
    return rec


async def sleep(
    ex: Execution, name: str, duration: Duration | None = None, until: datetime | None = None
) -> None:
    """Suspend the run for `duration` or until `until` (server clock)."""
    key, memo = ex.lookup(name)
    if memo is not MISSING:
        return
    async with ex.parking.busy():
        rel = millis(duration, "sleep") if duration is not None else -1
        if until is not None and not isinstance(until, datetime):
            raise InvalidArgumentError("sleep_until needs a datetime")
        absolute = epoch_ms(until) if until is not None else -1
        none = _none_record(ex)
        request = SleepRequest(
            run_id=ex.run_id, token=ex.token, step=key, rel_ms=rel, until_ms=absolute, record=none
        )
        rec = await _register(
            ex,
            key,
            "sleep",
            lambda park: ex.ns.scripts_of(ex.run_id).sleep(replace(request, park=park)),
        )
    await _settled(ex, key, "sleep", rec)


async def wait_for_event(
    ex: Execution,
    name: str,
    event: str,
    match: dict[str, Any] | None = None,
    timeout: Duration | None = None,
    lookback: Duration = 0,
) -> Event | None:
    """Suspend until an event `event` whose data matches `match` arrives; None on timeout."""
    key, rec = ex.lookup_record(name)
    if rec is not None:
        return decode_event(_stored(ex, key, rec))
    async with ex.parking.busy():
        check_name("event", event)
        shape, vkey = match_key(match or {})
        timeout_ms = millis(timeout, "timeout") if timeout is not None else -1
        back, none = millis(lookback, "lookback"), _none_record(ex)
        received = record_prefix("completed", "result")
        request = WaitEventRequest(
            run_id=ex.run_id,
            token=ex.token,
            step=key,
            event=event,
            shape=shape,
            values_key=vkey,
            timeout_ms=timeout_ms,
            lookback_ms=back,
            timed_out_record=none,
            received_prefix=received,
        )
        found = await _register(
            ex,
            key,
            "event",
            lambda park: ex.ns.scripts_of(ex.run_id).wait_event(replace(request, park=park)),
        )
    return decode_event(_stored(ex, key, await _settled(ex, key, "event", found)))


async def invoke(
    ex: Execution, name: str, job: str, payload: Any = None, timeout: Duration | None = None
) -> Any:
    """Start `job` as a child run (once) and suspend until it finishes; its result, or
    RunFailed when it failed, was cancelled or timed out. Children invoked in one gather
    run in parallel."""
    key, rec = ex.lookup_record(name)
    if rec is not None and (rec["status"] == "completed" or isinstance(rec.get("error"), str)):
        return _stored(ex, key, rec)
    ns = ex.ns
    async with ex.parking.busy():
        check_name("job", job)
        data = dumps_checked(ns.serializer, payload, "invoke payload")
        timeout_ms = millis(timeout, "timeout") if timeout is not None else -1
        records = (
            step_failed("child run timed out"),
            record_prefix("completed", "result"),
            record_prefix("failed", "error"),
        )
        child_id = ""
        for tries in range(STALE_TRIES):
            rev = await ns.definitions.load(force=tries > 0)
            rules = ns.definitions.rules(job)
            queue = rules.queue if rules is not None else await ns.queue_for(job)
            flow = rules.flow if rules is not None else None
            here = ns.part_of(ex.run_id)  # the child's partition: its key's, else the parent's
            child_id = child_id or ns.new_run_id(
                pick_partition(ns.partitions, job, flow, payload, near=here)
            )
            fields = {}  # the child's hook fields, e.g. the trace context of this step
            if ns.hooks:
                fields = {f"x:{k}": v for k, v in ns.hooks.start_fields(job, queue).items()}
            request = InvokeRequest(
                run_id=ex.run_id,
                token=ex.token,
                step=key,
                job=job,
                queue=queue,
                child_id=child_id,
                payload=data,
                timeout_ms=timeout_ms,
                idem_ttl_ms=ns.settings.retention_ms,
                records=records,
                fields=fields,
                rev=rev,
                plan=_child_plan(rules, payload),
            )

            def call(park: bool, r: InvokeRequest = request) -> Awaitable[WaitReply]:
                return ns.scripts_of(r.run_id).invoke(replace(r, park=park))

            try:
                rec = await _register(ex, key, "child", call)
                break
            except StaleDefinitionsError:
                ex.parking.registered.discard(key)
        else:
            raise StaleDefinitionsError(f"invoke {job!r}: definitions kept changing")
    return _stored(ex, key, await _settled(ex, key, "child", rec))


def _child_plan(rules: Rules | None, payload: Any) -> str:
    """A child's plan under its job's rules: concurrency, throttle, priority and cancel_on
    apply; rate limit, singleton and debounce do not (an invoked child is always created,
    or its parent would wait for nothing)."""
    if rules is None or not (rules.flow or rules.priority):
        return ""
    flow = replace(rules.flow, rate_limit=None, singleton=None, debounce=None)
    return flow.plan(rules.job, payload, match_key, rules.priority)


async def send_event(ex: Execution, name: str, event: str, data: Any = None) -> dict[str, Any]:
    """Send an event once for this run (a memoized step with a deterministic event id)."""
    key, memo = ex.lookup(name)
    if memo is not MISSING:
        return dict(memo)
    async with ex.parking.busy():
        sent = await EventBus(ex.ns).send(event, data, event_id=f"{ex.run_id}:{key}")
        value = {"id": sent.id, "resumed": sent.resumed, "started": sent.started}
        return dict(await ex.record(key, value))
