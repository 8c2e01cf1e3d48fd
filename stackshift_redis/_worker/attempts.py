"""Runs one taken attempt: builds the context, calls the handler (inside the hook chain),
and prepares the script call that records the outcome."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .._attempt.context import RunContext, SyncRunContext
from .._attempt.execution import Execution, parse_steps
from .._attempt.parking import CancelRequested, Suspended
from .._client.events import decode_event
from .._client.state import State, SyncState
from .._core.jobs import JobDef, QueueConfig
from .._core.namespace import Namespace
from .._core.records import error_json, from_ms
from .._core.scripts import FailRequest, HandBackRequest, ScriptCall, TakenRun
from ..errors import (
    InvalidArgumentError,
    LeaseLostError,
    NonRetriableError,
    PayloadError,
    RetryAfterError,
    RunFailed,
)
from ..hooks import AttemptInput

log = logging.getLogger("stackshift.worker")
HANDBACK_DELAY_MS = 1000  # a run of an unknown job waits this long before it is ready again
HANDBACK_LIMIT_MS = 300_000  # ... and fails once no worker with the job took it this long


class Executor:
    """Executes attempts for one worker on its event loop."""

    def __init__(self, ns: Namespace, state: State, loop: asyncio.AbstractEventLoop) -> None:
        self.ns = ns
        self.state = state
        self.loop = loop
        self.threads_busy = 0  # plain-function handlers still running in threads
        self._threads_lock = threading.Lock()
        self._sync_state: SyncState | None = None
        self.resources: dict[str, Any] = {}  # filled by the worker's startup hooks
        self.handback_limit_ms = HANDBACK_LIMIT_MS  # unknown jobs: fail after this long
        self.handed_back_at = 0.0  # monotonic time of this worker's last hand-back
        self.conf: Callable[[str], QueueConfig] = ns.registry.queue  # effective settings

    @property
    def sync_state(self) -> SyncState:
        """State with blocking methods, for plain-function handlers running in threads."""
        if self._sync_state is None:
            loop = self.loop

            def runner(coro: Any) -> Any:
                return asyncio.run_coroutine_threadsafe(coro, loop).result()

            self._sync_state = SyncState(self.state, runner)
        return self._sync_state

    def build(self, run: TakenRun, sent_at: float) -> Execution:
        """An Execution from one taken run (`sent_at`: monotonic time the take was sent)."""
        ns = self.ns
        event = decode_event(ns.serializer.loads(run.event)) if run.event else None
        hook_input = AttemptInput(
            run.run_id, run.job, run.queue, run.attempt, run.resumed, run.fields,
            first=run.attempt == 1, waited=run.waited_ms / 1000, resumed_by=run.resumed_by,
        )  # fmt: skip
        return Execution(
            ns=ns, state=self.state, run_id=run.run_id, job=run.job, queue=run.queue,
            token=run.token, attempt=run.fails + 1, payload=ns.serializer.loads(run.payload),
            event=event, steps=parse_steps(run.steps, ns), hook_input=hook_input,
            lease_ms=round(self.conf(run.queue).visibility_timeout * 1000),
            confirmed_at=sent_at,
            schedule=run.schedule or None, scheduled_at=from_ms(run.scheduled_at or None),
            pending=run.pending,
        )  # fmt: skip

    async def run(self, ex: Execution) -> ScriptCall | None:
        """Execute the handler; the outcome to record, or None when nothing may be recorded."""
        ns = self.ns
        job = ns.registry.jobs.get(ex.job)
        if job is None:
            return self._hand_back(ex)
        log.debug("run %s (%s) attempt %d started", ex.run_id, ex.job, ex.attempt,
                  extra=_extra(ex))  # fmt: skip
        timer = asyncio.timeout(job.timeout)
        try:
            try:
                async with timer:
                    if ns.hooks:
                        result = await ns.hooks.attempt(ex.hook_input, lambda: self._call(job, ex))
                    else:
                        result = await self._call(job, ex)
            finally:
                await ex.parking.close()
        except Suspended:
            return None
        except BaseException as exc:
            if ex.parking.parked and not isinstance(exc, asyncio.CancelledError):
                # the run is parked: what a branch still running did after that is dropped
                log.debug("run %s parked; the attempt ended with %r", ex.run_id, exc)
                return None
            return await self._outcome(ex, job, exc, timer)
        if ex.parking.parked:
            return None
        try:
            data = ns.serializer.dumps(result)
        except PayloadError as exc:
            return self._failure(ex, job, exc.at("return value"), retry_delay=None)
        self._notify(ex, "completed", None)
        log.info("run %s (%s) completed", ex.run_id, ex.job, extra=_extra(ex))
        return ns.scripts.complete_call(ex.run_id, ex.token, data, ns.settings.retention_ms)

    async def _outcome(
        self, ex: Execution, job: JobDef, exc: BaseException, timer: asyncio.Timeout
    ) -> ScriptCall | None:
        """The outcome of an attempt that raised `exc` (None: nothing may be recorded)."""
        if isinstance(exc, LeaseLostError):
            log.warning("run %s: lease lost to another worker; dropping its outcome", ex.run_id,
                        extra=_extra(ex))  # fmt: skip
            self._notify(ex, "lost", None)
            return None
        if isinstance(exc, CancelRequested):
            reason = await self.ns.redis.hget(self.ns.keys.run(ex.run_id), "cancel")
            text = reason.decode() if reason else "cancelled while running"
            return self._failure(ex, job, CancelRequested(text), None, "cancelled")
        if isinstance(exc, NonRetriableError | InvalidArgumentError):  # bad arguments: a bug
            return self._failure(ex, job, exc, retry_delay=None)
        if isinstance(exc, RunFailed):  # a stored child failure is final (see Step.invoke)
            return self._failure(ex, job, exc, retry_delay=None if exc.final else -1)
        if isinstance(exc, RetryAfterError):
            return self._failure(ex, job, exc, retry_delay=exc.delay)
        if isinstance(exc, TimeoutError):
            expired = TimeoutError(f"attempt exceeded its timeout of {job.timeout:g}s")
            return self._failure(ex, job, expired if timer.expired() else exc, retry_delay=-1)
        if isinstance(exc, Exception):
            return self._failure(ex, job, exc, retry_delay=-1)
        raise exc  # CancelledError, KeyboardInterrupt: not an outcome of the run

    async def _call(self, job: JobDef, ex: Execution) -> Any:
        ex.parking.root = asyncio.current_task()  # see Parking: its waits park through it
        ex.parking.sync = not job.is_async
        if job.is_async:
            actx = RunContext(ex)
            actx.resources = self.resources
            try:
                result = await job.fn(actx)
            except asyncio.CancelledError:
                task = asyncio.current_task()  # cancelled by its park alone: Suspended
                if ex.parking.parked and task is not None and task.uncancel() == 0:
                    raise Suspended("parked") from None
                raise
            finally:
                forgotten = actx.step.unawaited()
            if forgotten:
                raise NonRetriableError(
                    f"step {forgotten[0]!r} was created but never awaited (add `await` "
                    f"before ctx.step...({forgotten[0]!r}, ...))"
                )
            return result
        ctx = SyncRunContext(ex, self.loop, self.sync_state)
        ctx.resources = self.resources

        def body() -> Any:  # counted until the thread returns, even if the attempt was cancelled
            try:
                return job.fn(ctx)
            finally:
                with self._threads_lock:
                    self.threads_busy -= 1

        with self._threads_lock:
            self.threads_busy += 1
        return await asyncio.to_thread(body)

    def _hand_back(self, ex: Execution) -> ScriptCall:
        """A run of a job this worker does not register (a rolling deploy, a worker of an
        older or newer version): hand it back for a worker that has the job."""
        limit = self.handback_limit_ms
        self.handed_back_at = time.monotonic()
        log.error(
            "run %s: job %r is not registered in this worker (queue %s): handed back for a "
            "worker that has it; it fails if no such worker takes it within %gs",
            ex.run_id, ex.job, ex.queue, limit / 1000, extra=_extra(ex),
        )  # fmt: skip
        msg = (
            f"job {ex.job!r} is not registered in the workers that took this run for "
            f"{limit / 1000:g}s"
        )
        err = json.dumps({"type": "UnknownJobError", "message": msg, "traceback": ""})
        self._notify(ex, "handed_back", None)
        request = HandBackRequest(
            run_id=ex.run_id,
            token=ex.token,
            delay_ms=HANDBACK_DELAY_MS,
            limit_ms=limit,
            retention_ms=self.ns.settings.retention_ms,
            error_json=err,
        )
        return self.ns.scripts.hand_back_call(request)

    def _notify(self, ex: Execution, outcome: str, error: BaseException | None) -> None:
        if self.ns.hooks:
            self.ns.hooks.finished(ex.hook_input, outcome, error)

    def _failure(
        self,
        ex: Execution,
        job: JobDef | None,
        exc: BaseException,
        retry_delay: float | None,
        outcome: str = "failed",
        logged: bool = False,
    ) -> ScriptCall:
        """retry_delay: None = no retry, -1 = the job's backoff, else that many seconds."""
        ns = self.ns
        delay_ms = 0
        tries = ex.attempt
        retriable = outcome == "failed" and retry_delay is not None and job is not None
        if retriable and job is not None and retry_delay is not None and tries <= job.retries:
            delay = job.backoff(tries) if retry_delay < 0 else retry_delay
            outcome, delay_ms = "retry", max(0, round(delay * 1000))
        if not logged:
            _log_outcome(ex, outcome, exc, delay_ms)
        err = error_json(exc)
        if outcome == "cancelled":
            err = json.dumps({"type": "RunCancelled", "message": str(exc), "traceback": ""})
        self._notify(ex, outcome, exc)
        request = FailRequest(
            run_id=ex.run_id,
            token=ex.token,
            error_json=err,
            outcome=outcome,
            retention_ms=ns.settings.retention_ms,
            delay_ms=delay_ms,
        )
        return ns.scripts.fail_call(request)


def _extra(ex: Execution) -> dict[str, Any]:
    return ex.log_extra


def _log_outcome(ex: Execution, outcome: str, exc: BaseException, delay_ms: int) -> None:
    """One line per failed attempt: a retry at WARNING with the error, a final failure at
    ERROR with its traceback, a cancel at INFO."""
    error = f"{type(exc).__name__}: {exc}"
    if outcome == "retry":
        log.warning("run %s (%s) attempt %d failed, retrying in %.3gs: %s", ex.run_id, ex.job,
                    ex.attempt, delay_ms / 1000, error, extra=_extra(ex))  # fmt: skip
    elif outcome == "cancelled":
        log.info("run %s (%s) cancelled: %s", ex.run_id, ex.job, exc, extra=_extra(ex))
    else:
        trace = exc if exc.__traceback__ is not None else None
        log.error("run %s (%s) failed: %s", ex.run_id, ex.job, error, exc_info=trace,
                  extra=_extra(ex))  # fmt: skip
