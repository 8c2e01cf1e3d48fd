"""Runs one taken attempt: builds the context, calls the handler (inside the hook chain),
records the outcome with its finish script, and only then tells hooks and the log.

The finish (complete, fail or hand_back) is sent inside the hooks' `attempt` chain, so an
attempt's span and duration end once Redis answered it, and `Hook.finished`, the metrics
and the outcome log line hear what Redis recorded: a finish refused with LEASE_LOST
(another worker holds the run now) is `lost`, one Redis did not confirm is `unconfirmed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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
from .._core.serializer import dumps_checked
from ..errors import (
    InvalidArgumentError,
    LeaseLostError,
    NonRetriableError,
    PayloadError,
    RetryAfterError,
    RunFailed,
    UnknownJobError,
)
from ..hooks import AttemptInput
from .handbacks import HandBackLog
from .outcomes import Outcome, log_outcome

log = logging.getLogger("stackshift.worker")
HANDBACK_DELAY_MS = 1000  # a run of an unknown job waits this long before it is ready again
HANDBACK_LIMIT_MS = 300_000  # ... and fails once no worker with the job took it this long
Finish = Callable[[ScriptCall], Awaitable[object]]
"""Sends one finish script call: its reply, or the exception it ended with (a value)."""


@dataclass
class _Settled:
    """What the attempt inside the hook chain settled, for `Executor.run` to tell."""

    done: bool = False  # the handler ended (the hooks did not stop it from running)
    outcome: Outcome | None = None  # as recorded; None: nothing to tell (the run parked)
    raised: BaseException | None = None  # what it raised through the hooks, if anything


class Executor:
    """Executes attempts for one worker on its event loop; `finish` records outcomes (the
    worker batches them per loop tick), `conf` gives a queue's effective settings,
    `resources` is what the startup hooks filled (ctx.resources)."""

    def __init__(
        self,
        ns: Namespace,
        state: State,
        loop: asyncio.AbstractEventLoop,
        *,
        finish: Finish,
        conf: Callable[[str], QueueConfig],
        resources: dict[str, Any],
        handback_limit_ms: int = HANDBACK_LIMIT_MS,
    ) -> None:
        self.ns = ns
        self.state = state
        self.loop = loop
        self.finish = finish
        self.conf = conf
        self.resources = resources
        self.handback_limit_ms = handback_limit_ms  # unknown jobs: fail after this long
        self.threads_busy = 0  # plain-function handlers still running in threads
        self.handed_back_at = 0.0  # monotonic time of this worker's last hand-back
        self.handbacks = HandBackLog()  # one line per run handed back, a summary a minute
        self._threads_lock = threading.Lock()
        self._sync_state: SyncState | None = None

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
            run.run_id,
            run.job,
            run.queue,
            attempt=run.fails + 1,  # as ctx.attempt
            resumed=run.resumed,
            fields=run.fields,
            first=run.execution == 1,
            waited=run.waited_ms / 1000,
            resumed_by=run.resumed_by,
            execution=run.execution,
        )
        return Execution(
            ns=ns,
            state=self.state,
            run_id=run.run_id,
            job=run.job,
            queue=run.queue,
            token=run.token,
            attempt=run.fails + 1,
            payload=ns.serializer.loads(run.payload),
            event=event,
            steps=parse_steps(run.steps, ns),
            hook_input=hook_input,
            lease_ms=round(self.conf(run.queue).visibility_timeout * 1000),
            confirmed_at=sent_at,
            schedule=run.schedule or None,
            scheduled_at=from_ms(run.scheduled_at or None),
            pending=run.pending,
            version=run.version,
        )

    async def run(self, ex: Execution) -> None:
        """Execute the handler and record its outcome; then tell hooks and the log."""
        job = self.ns.registry.handler(ex.job, ex.version)
        if job is None:
            self._tell(ex, await self._record(ex, self._hand_back(ex)))
            return
        log.debug(
            "run %s (%s) attempt %d started", ex.run_id, ex.job, ex.attempt, extra=ex.log_extra
        )
        settled = _Settled()
        try:
            if self.ns.hooks:
                await self.ns.hooks.attempt(ex.hook_input, lambda: self._attempt(job, ex, settled))
            else:
                await self._attempt(job, ex, settled)
        except BaseException as exc:
            if not settled.done:  # a hook raised around the handler: as if the handler had
                outcome = await self._ended(ex, job, exc, None)
                if outcome is not None:
                    settled.outcome = await self._record(ex, outcome)
            elif exc is not settled.raised:  # not what the attempt raised through the hooks
                if not isinstance(exc, Exception):  # cancelled after the outcome was settled
                    if settled.outcome is not None:
                        self._tell(ex, settled.outcome)
                    raise
                log.error(
                    "run %s: a hook raised after its outcome was recorded: %r",
                    ex.run_id,
                    exc,
                    extra=ex.log_extra,
                )
        if settled.outcome is not None:
            self._tell(ex, settled.outcome)

    async def _attempt(self, job: JobDef, ex: Execution, settled: _Settled) -> Any:
        """The handler under its timeout, then its outcome recorded (the innermost call of
        the hook chain). Hooks see what the handler raised, or LeaseLostError / the Redis
        error when its outcome could not be recorded."""
        timer = asyncio.timeout(job.timeout)
        try:
            try:
                async with timer:
                    result = await self._call(job, ex)
            finally:
                await ex.parking.close()
        except BaseException as exc:
            outcome = await self._ended(ex, job, exc, timer)
            settled.done, settled.raised = True, exc
            if outcome is None:  # parked
                raise
            settled.outcome = await self._record(ex, outcome)
            unrecorded = _unrecorded(settled.outcome)
            if unrecorded is None or unrecorded is exc:
                raise
            settled.raised = unrecorded
            raise unrecorded from exc
        settled.done = True
        if ex.parking.parked:
            return result
        try:
            data = dumps_checked(self.ns.serializer, result, "return value")
        except PayloadError as exc:
            bad = exc
            settled.outcome = await self._record(ex, self._failure(ex, job, bad, None))
            settled.raised = _unrecorded(settled.outcome) or bad
            raise settled.raised from None
        ns = self.ns
        call = ns.scripts_of(ex.run_id).complete_call(
            ex.run_id, ex.token, data, ns.settings.retention_ms
        )
        settled.outcome = await self._record(ex, Outcome("completed", call))
        settled.raised = _unrecorded(settled.outcome)
        if settled.raised is not None:
            raise settled.raised
        return result

    async def _record(self, ex: Execution, outcome: Outcome) -> Outcome:
        """Send the outcome's finish script and wait for Redis' answer: the outcome as
        recorded, or `lost` (LEASE_LOST: another worker holds the run) or `unconfirmed`
        (Redis could not be reached after retries, or answered with an error)."""
        if outcome.call is None:
            return outcome
        if ex.lost:  # the worker took the run again meanwhile: this attempt is stale
            lost = LeaseLostError(f"run {ex.run_id}: taken again by this worker")
            return Outcome("lost", error=lost, intended=outcome.name)
        ex.finished = True  # no lease to renew from here on
        reply = await self.finish(outcome.call)
        if isinstance(reply, LeaseLostError):
            return Outcome("lost", error=reply, intended=outcome.name)
        if isinstance(reply, BaseException):
            return Outcome("unconfirmed", error=reply, intended=outcome.name)
        if outcome.name == "handed_back" and reply in (b"failed", "failed"):  # limit reached
            return Outcome("handed_back", error=UnknownJobError("not taken by a worker"))
        return outcome

    def _tell(self, ex: Execution, outcome: Outcome) -> None:
        """The outcome's log line, then every hook's `finished`."""
        if outcome.name == "handed_back":
            has_job = ex.job in self.ns.registry.versions
            failed = outcome.error is not None  # it failed: the hand-back limit was reached
            self.handbacks.note(
                ex.run_id, ex.job, ex.version, ex.queue, has_job, failed, ex.log_extra
            )
        else:
            log_outcome(ex, outcome, self.handback_limit_ms)
        if self.ns.hooks:
            self.ns.hooks.finished(ex.hook_input, outcome.name, outcome.error)

    async def _ended(
        self, ex: Execution, job: JobDef, exc: BaseException, timer: asyncio.Timeout | None
    ) -> Outcome | None:
        """The outcome of an attempt that raised `exc` (None: the run parked, nothing to
        record). CancelledError and KeyboardInterrupt are raised again."""
        if isinstance(exc, Suspended):
            return None
        if ex.parking.parked and not isinstance(exc, asyncio.CancelledError):
            # the run is parked: what a branch still running did after that is dropped
            log.debug("run %s parked; the attempt ended with %r", ex.run_id, exc)
            return None
        if isinstance(exc, LeaseLostError):
            return Outcome("lost", error=exc)
        if isinstance(exc, CancelRequested):
            reason = await self.ns.redis.hget(self.ns.keys_of(ex.run_id).run(ex.run_id), "cancel")
            text = reason.decode() if reason else "cancelled while running"
            return self._failure(ex, job, CancelRequested(text), None, "cancelled")
        if isinstance(exc, NonRetriableError | InvalidArgumentError | PayloadError):  # a bug
            return self._failure(ex, job, exc, retry_delay=None)
        if isinstance(exc, RunFailed):  # a stored child failure is final (see Step.invoke)
            return self._failure(ex, job, exc, retry_delay=None if exc.final else -1)
        if isinstance(exc, RetryAfterError):
            return self._failure(ex, job, exc, retry_delay=exc.delay)
        if isinstance(exc, TimeoutError):
            expired = timer is not None and timer.expired()
            timed_out = TimeoutError(f"attempt exceeded its timeout of {job.timeout:g}s")
            return self._failure(ex, job, timed_out if expired else exc, retry_delay=-1)
        if isinstance(exc, Exception):
            return self._failure(ex, job, exc, retry_delay=-1)
        raise exc  # CancelledError, KeyboardInterrupt: not an outcome of the run

    async def _call(self, job: JobDef, ex: Execution) -> Any:
        ex.parking.root = asyncio.current_task()  # see Parking: its waits park through it
        ex.parking.sync = not job.is_async
        if job.is_async:
            actx = RunContext(ex, self.resources)
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
            await ex.flush_patches()
            return result
        ctx = SyncRunContext(ex, self.loop, self.sync_state, self.resources)

        def body() -> Any:  # counted until the thread returns, even if the attempt was cancelled
            try:
                return job.fn(ctx)
            finally:
                with self._threads_lock:
                    self.threads_busy -= 1

        with self._threads_lock:
            self.threads_busy += 1
        result = await asyncio.to_thread(body)
        await ex.flush_patches()
        return result

    def _hand_back(self, ex: Execution) -> Outcome:
        """A run of a job this worker does not register (a rolling deploy, a worker of an
        older or newer version): hand it back for a worker that has the job."""
        limit = self.handback_limit_ms
        self.handed_back_at = time.monotonic()
        if ex.job in self.ns.registry.versions:  # a version this worker lacks: stay away
            # until the run is due again, so that a worker that has it takes it (else this
            # worker, which promotes it, could win it back every time: a ping-pong)
            self.handed_back_at += HANDBACK_DELAY_MS / 1000
        msg = (
            f"job {ex.job!r} is not registered in the workers that took this run for "
            f"{limit / 1000:g}s"
        )
        request = HandBackRequest(
            run_id=ex.run_id,
            token=ex.token,
            delay_ms=HANDBACK_DELAY_MS,
            limit_ms=limit,
            retention_ms=self.ns.settings.retention_ms,
            error_json=json.dumps({"type": "UnknownJobError", "message": msg, "traceback": ""}),
        )
        return Outcome("handed_back", self.ns.scripts_of(ex.run_id).hand_back_call(request))

    def _failure(
        self,
        ex: Execution,
        job: JobDef,
        exc: BaseException,
        retry_delay: float | None,
        outcome: str = "failed",
    ) -> Outcome:
        """retry_delay: None = no retry, -1 = the job's backoff, else that many seconds."""
        delay_ms = 0
        retriable = outcome == "failed" and retry_delay is not None
        if retriable and retry_delay is not None and ex.attempt <= job.retries:
            delay = job.backoff(ex.attempt) if retry_delay < 0 else retry_delay
            outcome, delay_ms = "retry", max(0, round(delay * 1000))
        err = error_json(exc)
        if outcome == "cancelled":
            err = json.dumps({"type": "RunCancelled", "message": str(exc), "traceback": ""})
        request = FailRequest(
            run_id=ex.run_id,
            token=ex.token,
            error_json=err,
            outcome=outcome,
            retention_ms=self.ns.settings.retention_ms,
            delay_ms=delay_ms,
        )
        return Outcome(outcome, self.ns.scripts_of(ex.run_id).fail_call(request), exc, delay_ms)


def _unrecorded(recorded: Outcome) -> BaseException | None:
    """The error that kept an outcome from being recorded (lost, unconfirmed), else None:
    the attempt raises it through the hooks (its span ends with it)."""
    return recorded.error if recorded.name in ("lost", "unconfirmed") else None
