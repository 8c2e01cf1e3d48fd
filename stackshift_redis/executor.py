"""Runs one claimed attempt: builds the context, calls the handler, records the outcome."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .context import (
    CancelRequested,
    Execution,
    RunContext,
    Step,
    Suspended,
    SyncRunContext,
    SyncStep,
    parse_steps,
)
from .errors import LeaseLostError, NonRetriableError, PayloadError, RetryAfterError
from .events import decode_event
from .jobs import JobDef
from .records import Event, error_json

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("stackshift.worker")


@dataclass
class Outcome:
    """What the attempt ended with, to be recorded by one script call."""

    script: str
    keys: list[str]
    args: list[Any]


def _event(raw: bytes, app: Any) -> Event | None:
    return decode_event(app.serializer.loads(raw)) if raw else None


def build_execution(worker: Worker, queue: str, reply: list[Any]) -> Execution:
    """An Execution from one `ok` entry of the claim reply."""
    app = worker.app
    run_id, _, token, _executions, job, payload, event, steps, fails = reply
    return Execution(
        app=app,
        run_id=run_id.decode(),
        job=job.decode(),
        queue=queue,
        token=token.decode(),
        attempt=int(fails or 0) + 1,
        payload=app.serializer.loads(payload),
        event=_event(event, app),
        steps=parse_steps(steps, app),
    )


async def run_attempt(worker: Worker, ex: Execution) -> Outcome | None:
    """Execute the handler; the outcome to record, or None when nothing may be recorded."""
    app = worker.app
    job = app.jobs.get(ex.job)
    if job is None:
        missing = NonRetriableError(f"job {ex.job!r} is not registered in this worker")
        return _failure(worker, ex, None, missing, retry_delay=None)
    timer = asyncio.timeout(job.timeout)
    try:
        async with timer:
            result = await _call(worker, job, ex)
    except Suspended:
        return None
    except LeaseLostError:
        log.warning("run %s: lease lost to another worker; dropping its outcome", ex.run_id)
        return None
    except CancelRequested:
        return _failure(
            worker, ex, job, CancelRequested("cancelled while running"), None, "cancelled"
        )
    except NonRetriableError as exc:
        return _failure(worker, ex, job, exc, retry_delay=None)
    except RetryAfterError as exc:
        return _failure(worker, ex, job, exc, retry_delay=exc.delay)
    except TimeoutError as exc:
        expired = TimeoutError(f"attempt exceeded its timeout of {job.timeout:g}s")
        return _failure(worker, ex, job, expired if timer.expired() else exc, retry_delay=-1)
    except Exception as exc:
        return _failure(worker, ex, job, exc, retry_delay=-1)
    try:
        data = app.serializer.dumps(result)
    except PayloadError as exc:
        return _failure(worker, ex, job, exc, retry_delay=None)
    keys, args = app.scripts.complete_call(ex.queue, ex.run_id, ex.token, data, app.retention_ms)
    return Outcome("complete", keys, args)


async def _call(worker: Worker, job: JobDef, ex: Execution) -> Any:
    if job.is_async:
        return await job.fn(RunContext(ex, Step(ex)))
    loop = asyncio.get_running_loop()
    ctx = SyncRunContext(ex, SyncStep(ex, loop), lambda: worker.sync_state, loop)

    def body() -> Any:  # counted until the thread returns, even if the attempt was cancelled
        try:
            return job.fn(ctx)
        finally:
            with worker.threads_lock:
                worker.threads_busy -= 1

    with worker.threads_lock:
        worker.threads_busy += 1
    return await asyncio.to_thread(body)


def _failure(
    worker: Worker,
    ex: Execution,
    job: JobDef | None,
    exc: BaseException,
    retry_delay: float | None,
    outcome: str = "failed",
) -> Outcome:
    """retry_delay: None = no retry, -1 = the job's backoff, else that many seconds."""
    app = worker.app
    delay_ms = 0
    tries = ex.attempt
    if outcome == "failed" and retry_delay is not None and job is not None and tries <= job.retries:
        delay = job.backoff(tries) if retry_delay < 0 else retry_delay
        outcome, delay_ms = "retry", max(0, round(delay * 1000))
    if outcome != "retry":
        log.info("run %s (%s) %s: %s", ex.run_id, ex.job, outcome, exc)
    err = error_json(exc)
    if outcome == "cancelled":
        err = json.dumps({"type": "RunCancelled", "message": str(exc), "traceback": ""})
    keys, args = app.scripts.fail_call(
        ex.queue, ex.run_id, ex.token, err, outcome, delay_ms, app.retention_ms
    )
    return Outcome("fail", keys, args)
