"""Durable waits inside a handler: sleep, wait_for_event, invoke. Each either returns the
step's stored outcome or parks the run in one script and raises Suspended, ending the
attempt without holding a worker slot; the run re-executes when its time, event or child
arrives, and the step then returns its stored outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .errors import InvalidArgumentError, RunFailed
from .events import EventBus, decode_event, match_key
from .execution import MISSING, Execution, Suspended
from .keys import check_name
from .records import (
    Duration,
    Event,
    epoch_ms,
    millis,
    new_run_id,
    read_step,
    record_prefix,
    step_completed,
    step_failed,
)


def _none_record(ex: Execution) -> bytes:
    return step_completed(ex.ns.serializer.dumps(None))


def _stored(ex: Execution, key: str, rec: dict[str, Any]) -> Any:
    if rec["status"] == "completed":
        return rec.get("result")
    raise RunFailed(f"step {key!r}: {rec.get('error')}", run_id=ex.run_id, final=True)


def _park(ex: Execution, key: str, kind: str) -> None:
    ex.steps.pop(key, None)
    if ex.ns.hooks:
        ex.ns.hooks.suspended(ex.hook_input, key, kind)
    raise Suspended(key)


async def sleep(
    ex: Execution, name: str, duration: Duration | None = None, until: datetime | None = None
) -> None:
    """Suspend the run for `duration` or until `until` (server clock)."""
    key, memo = ex.lookup(name)
    if memo is not MISSING:
        return
    rel = millis(duration, "sleep") if duration is not None else -1
    if until is not None and not isinstance(until, datetime):
        raise InvalidArgumentError("sleep_until needs a datetime")
    absolute = epoch_ms(until) if until is not None else -1
    if await ex.ns.scripts.sleep(ex.run_id, ex.token, key, rel, absolute, _none_record(ex)):
        _park(ex, key, "sleep")
    ex.steps[key] = {"status": "completed", "result": None}


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
    check_name("event", event)
    shape, vkey = match_key(match or {})
    timeout_ms = millis(timeout, "timeout") if timeout is not None else -1
    reply = await ex.ns.scripts.wait_event(
        ex.run_id, ex.token, key, event, shape, vkey, timeout_ms, millis(lookback, "lookback"),
        _none_record(ex), record_prefix("completed", "result"),
    )  # fmt: skip
    if reply.parked:
        _park(ex, key, "event")
    assert reply.value is not None
    value = ex.ns.serializer.loads(reply.value)
    ex.steps[key] = {"status": "completed", "result": value}
    return decode_event(value)


async def invoke(
    ex: Execution, name: str, job: str, payload: Any = None, timeout: Duration | None = None
) -> Any:
    """Start `job` as a child run (once) and suspend until it finishes; its result, or
    RunFailed when it failed, was cancelled or timed out."""
    key, rec = ex.lookup_record(name)
    if rec is not None and (rec["status"] == "completed" or isinstance(rec.get("error"), str)):
        return _stored(ex, key, rec)
    ns = ex.ns
    check_name("job", job)
    queue = await ns.queue_for(job)
    data = ns.serializer.dumps(payload)
    timeout_ms = millis(timeout, "timeout") if timeout is not None else -1
    records = (
        step_failed("child run timed out"),
        record_prefix("completed", "result"),
        record_prefix("failed", "error"),
    )
    fields = {}  # the child's hook fields, e.g. the trace context of this step
    if ns.hooks:
        fields = {f"x:{k}": v for k, v in ns.hooks.start_fields(job, queue).items()}
    reply = await ns.scripts.invoke(
        ex.run_id, ex.token, key, job, queue, new_run_id(), data, timeout_ms,
        ns.settings.retention_ms, records, fields,
    )  # fmt: skip
    if reply.parked:
        _park(ex, key, "child")
    assert reply.value is not None
    stored = read_step(reply.value, ns.serializer)  # the record the script just stored
    ex.steps[key] = stored
    return _stored(ex, key, stored)


async def send_event(ex: Execution, name: str, event: str, data: Any = None) -> dict[str, Any]:
    """Send an event once for this run (a memoized step with a deterministic event id)."""
    key, memo = ex.lookup(name)
    if memo is not MISSING:
        return dict(memo)
    sent = await EventBus(ex.ns).send(event, data, event_id=f"{ex.run_id}:{key}")
    value = {"id": sent.id, "resumed": sent.resumed, "started": sent.started}
    return dict(await ex.record(key, value))
