"""What a handler gets: `RunContext` (async handlers) and `SyncRunContext` (plain
functions, run in a thread). Siblings with the same fields; only the step API, state and
`progress` and `publish` differ (awaitable in one, blocking in the other), so both
type-check."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from .._client.state import State, SyncState
from .._core.records import Event
from ..logs import run_extra
from .execution import Execution
from .output import Publisher
from .parking import CancelRequested
from .steps import Step, SyncStep


class _ContextBase:
    """Fields shared by both contexts."""

    payload: Any
    """The run's payload."""
    run_id: str
    """The run's id."""
    job: str
    """The job's name."""
    queue: str
    """The queue the run executes on."""
    attempt: int
    """1-based: failed attempts so far + 1 (resuming after a sleep or a wait keeps it)."""
    event: Event | None
    """The event that started the run (on_event jobs), else None."""
    logger: logging.LoggerAdapter[logging.Logger]
    """A logger whose records carry run_id, job, attempt and queue (see logs.py)."""
    resources: dict[str, Any]
    """What the worker's `@stackshift.on_startup` hooks put there (a DB pool, a client)."""
    schedule: str | None
    """The schedule that started the run, else None."""
    scheduled_at: datetime | None
    """The schedule's tick this run is for (aware, UTC), else None."""
    version: int
    """The job version this run is pinned to (`@stackshift.job(..., version=N)`)."""

    def __init__(self, execution: Execution, resources: dict[str, Any] | None = None) -> None:
        self._ex = execution
        self.payload = execution.payload
        self.run_id = execution.run_id
        self.job = execution.job
        self.queue = execution.queue
        self.attempt = execution.attempt
        self.event = execution.event
        self.resources = resources if resources is not None else {}
        self.schedule = execution.schedule
        self.scheduled_at = execution.scheduled_at
        self.version = execution.version
        self.logger = logging.LoggerAdapter(
            logging.getLogger("stackshift.run"),
            run_extra(self.run_id, self.job, self.attempt, self.queue),
        )
        self._publisher = Publisher(execution)

    def patched(self, patch_id: str) -> bool:
        """True when this run reaches this point for the first time with code that has
        patch `patch_id`; False when its history already went past this point without it
        (steps recorded further on). The answer is recorded in the run and never changes
        (README, "Deploying changes"). No await: the same in sync handlers."""
        return self._ex.patched(patch_id)

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled while running (`stackshift.cancel`): the attempt
        stops at its next step; long loops without steps can check this."""
        return self._ex.cancel_requested

    def check_cancelled(self) -> None:
        """Raise RunCancelled when the run was cancelled (the attempt then ends as
        cancelled, with the cancel's reason); for long loops between steps."""
        if self._ex.cancel_requested:
            raise CancelRequested(f"run {self.run_id} cancelled", run_id=self.run_id)


class RunContext(_ContextBase):
    """The context of an `async def` handler: `await ctx.step.run(...)`, `await
    ctx.progress(...)`, `await ctx.state.get(...)`."""

    step: Step
    """The step API: run, transact, sleep, sleep_until, wait_for_event, invoke, send_event."""

    def __init__(self, execution: Execution, resources: dict[str, Any] | None = None) -> None:
        super().__init__(execution, resources)
        self.step = Step(execution)

    @property
    def state(self) -> State:
        """The namespace's durable state."""
        return self._ex.state

    async def progress(self, value: Any) -> None:
        """Record the run's progress (any serializable value); see RunInfo.progress."""
        await self._ex.set_progress(value)

    async def publish(self, data: Any, topic: str = "default") -> str:
        """Append `data` (any serializable value) to the run's output stream, which
        `run.stream()` reads as it is produced; returns the message id. Size-checked like
        payloads (PayloadError, nothing written). Not memoized: code that runs again (a
        retry, a resume) publishes again, with its `ctx.attempt`."""
        return await self._publisher.publish(data, topic)


class SyncRunContext(_ContextBase):
    """The context of a plain-function handler (it runs in a worker thread):
    `ctx.step.run(...)`, `ctx.progress(...)` and `ctx.state.get(...)` block."""

    step: SyncStep
    """The step API, blocking: run, transact, sleep, sleep_until, wait_for_event, invoke,
    send_event."""

    def __init__(
        self,
        execution: Execution,
        loop: asyncio.AbstractEventLoop,
        state: SyncState,
        resources: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(execution, resources)
        self.step = SyncStep(execution, loop)
        self._loop = loop
        self._state = state

    @property
    def state(self) -> SyncState:
        """The namespace's durable state, with blocking methods."""
        return self._state

    def progress(self, value: Any) -> None:
        """Record the run's progress (blocking)."""
        asyncio.run_coroutine_threadsafe(self._ex.set_progress(value), self._loop).result()

    def publish(self, data: Any, topic: str = "default") -> str:
        """Append `data` to the run's output stream (blocking); the message id."""
        coro = self._publisher.publish(data, topic)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
