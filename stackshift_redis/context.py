"""RunContext and the Step API handlers use (async, and a synchronous twin for threads)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import NonRetriableError, PayloadError, RunCancelled
from .records import Event, read_step, step_completed, step_failed

if TYPE_CHECKING:
    from .app import StackShift
    from .state import State, SyncState

_MISSING = object()


class Suspended(BaseException):
    """The run was suspended (sleep, event or child wait): its attempt ends, nothing to record."""


class CancelRequested(RunCancelled):
    """Raised at a step boundary when the run was cancelled while running."""


@dataclass
class Execution:
    """One attempt of a run on this worker: what the handler's context reads and writes."""

    app: StackShift
    run_id: str
    job: str
    queue: str
    token: str
    attempt: int
    payload: Any
    event: Event | None
    steps: dict[str, dict[str, Any]]
    attempt_base: int = 0
    cancel_requested: bool = False
    lost: bool = False
    seen: dict[str, int] = field(default_factory=dict)

    def unique(self, name: str) -> str:
        """The step's stored name: `name`, then `name#2`, `name#3` within one execution."""
        if not isinstance(name, str) or not name or len(name) > 256:
            raise NonRetriableError(f"invalid step name {name!r}")
        n = self.seen.get(name, 0) + 1
        self.seen[name] = n
        return name if n == 1 else f"{name}#{n}"

    def lookup(self, name: str) -> tuple[str, Any]:
        """(stored name, memoized result or _MISSING); raises when a cancel is pending."""
        key = self.unique(name)
        rec = self.steps.get(key)
        if rec is not None and rec["status"] == "completed":
            return key, rec.get("result")
        if self.cancel_requested:
            raise CancelRequested(f"run {self.run_id} cancelled", run_id=self.run_id)
        return key, _MISSING

    async def record(self, key: str, value: Any) -> Any:
        """Store a completed step; returns the value as a later attempt will see it."""
        try:
            data = self.app.serializer.dumps(value)
        except PayloadError as exc:
            raise NonRetriableError(f"step {key!r} result: {exc}") from exc
        cancel = await self.app.scripts.record_step(
            self.run_id, self.token, key, step_completed(data), "step_completed"
        )
        stored = self.app.serializer.loads(data)
        self.steps[key] = {"status": "completed", "result": stored}
        if cancel:
            self.cancel_requested = True
        return stored

    async def record_failure(self, key: str, exc: BaseException) -> None:
        """Store a failed step (the attempt fails with it)."""
        error = {"type": type(exc).__name__, "message": str(exc)}
        await self.app.scripts.record_step(
            self.run_id, self.token, key, step_failed(error), "step_failed"
        )


class Step:
    """Steps inside an async handler: results are stored once and reused on later attempts."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution

    async def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` once for this run (sync or async) and store its result."""
        key, memo = self._ex.lookup(name)
        if memo is not _MISSING:
            return memo
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            await self._ex.record_failure(key, exc)
            raise
        return await self._ex.record(key, value)


class SyncStep:
    """Steps inside a plain-function handler (running in a worker thread)."""

    def __init__(self, execution: Execution, loop: asyncio.AbstractEventLoop) -> None:
        self._ex = execution
        self._loop = loop

    def _wait(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` once for this run, in this thread, and store its result."""
        key, memo = self._ex.lookup(name)
        if memo is not _MISSING:
            return memo
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            self._wait(self._ex.record_failure(key, exc))
            raise
        return self._wait(self._ex.record(key, value))


class RunContext:
    """What a handler gets: payload, ids, attempt, steps, state, the triggering event."""

    def __init__(self, execution: Execution, step: Step | SyncStep) -> None:
        self._ex = execution
        self.payload = execution.payload
        self.run_id = execution.run_id
        self.job = execution.job
        self.queue = execution.queue
        self.attempt = execution.attempt
        self.event = execution.event
        self.step = step
        self.logger = logging.LoggerAdapter(
            logging.getLogger("stackshift.run"), {"run_id": self.run_id, "job": self.job}
        )

    @property
    def state(self) -> State | SyncState:
        """The namespace's durable state (synchronous in plain-function handlers)."""
        return self._ex.app.state

    async def _set_progress(self, value: Any) -> None:
        app = self._ex.app
        await app.redis.hset(app.keys.run(self.run_id), "progress", app.serializer.dumps(value))

    async def progress(self, value: Any) -> None:
        """Record the run's progress (any serializable value); see RunInfo.progress."""
        await self._set_progress(value)


class SyncRunContext(RunContext):
    """The context of a plain-function handler: `progress` is synchronous."""

    def __init__(self, execution: Execution, step: SyncStep, state: Callable[[], SyncState],
                 loop: asyncio.AbstractEventLoop) -> None:  # fmt: skip
        super().__init__(execution, step)
        self._sync_state = state
        self._loop = loop

    @property
    def state(self) -> SyncState:
        """The namespace's durable state, with blocking methods."""
        return self._sync_state()

    def progress(self, value: Any) -> None:  # type: ignore[override]
        """Record the run's progress (blocking)."""
        asyncio.run_coroutine_threadsafe(self._set_progress(value), self._loop).result()


def parse_steps(raw: list[Any], app: StackShift) -> dict[str, dict[str, Any]]:
    """Step records from the claim reply's flat [name, record, ...] list."""
    return {raw[i].decode(): read_step(raw[i + 1], app.serializer) for i in range(0, len(raw), 2)}
