"""RunContext and the Step API handlers use (async, and a synchronous twin for threads)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import NonRetriableError, PayloadError, RunCancelled
from .records import Duration, Event, read_step, step_completed, step_failed

if TYPE_CHECKING:
    from .app import StackShift
    from .state import State, SyncState

MISSING = object()  # lookup(): the step has no stored result yet


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
    cancel_requested: bool = False
    lost: bool = False
    finished: bool = False  # its outcome is being recorded: no lease to renew
    seen: dict[str, int] = field(default_factory=dict)

    def unique(self, name: str) -> str:
        """The step's stored name: `name`, then `name#2`, `name#3` within one execution."""
        if not isinstance(name, str) or not name or len(name) > 256:
            raise NonRetriableError(f"invalid step name {name!r}")
        n = self.seen.get(name, 0) + 1
        self.seen[name] = n
        return name if n == 1 else f"{name}#{n}"

    def lookup_record(self, name: str) -> tuple[str, dict[str, Any] | None]:
        """(stored name, its record if any); raises when a cancel is pending and the step
        has not completed."""
        key = self.unique(name)
        rec = self.steps.get(key)
        if self.cancel_requested and (rec is None or rec["status"] != "completed"):
            raise CancelRequested(f"run {self.run_id} cancelled", run_id=self.run_id)
        return key, rec

    def lookup(self, name: str) -> tuple[str, Any]:
        """(stored name, memoized result or MISSING)."""
        key, rec = self.lookup_record(name)
        if rec is not None and rec["status"] == "completed":
            return key, rec.get("result")
        return key, MISSING

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
        if memo is not MISSING:
            return memo
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            await self._ex.record_failure(key, exc)
            raise
        return await self._ex.record(key, value)

    async def sleep(self, name: str, duration: Duration) -> None:
        """Suspend the run for `duration` without holding a worker slot."""
        await waits.sleep(self._ex, name, duration)

    async def sleep_until(self, name: str, when: datetime) -> None:
        """Suspend the run until `when` (naive datetimes are UTC)."""
        await waits.sleep(self._ex, name, until=when)

    async def wait_for_event(
        self,
        name: str,
        event: str,
        match: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        lookback: Duration = 0,
    ) -> Event | None:
        """Suspend until a matching event arrives (its Event), or None after `timeout`."""
        return await waits.wait_for_event(self._ex, name, event, match, timeout, lookback)

    async def invoke(
        self, name: str, job: str, payload: Any = None, timeout: Duration | None = None
    ) -> Any:
        """Run `job` as a child run and return its result (RunFailed if it fails)."""
        return await waits.invoke(self._ex, name, job, payload, timeout)

    async def send_event(self, name: str, event: str, data: Any = None) -> dict[str, Any]:
        """Send an event exactly once for this run; {id, resumed, started}."""
        return await waits.send_event(self._ex, name, event, data)


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
        if memo is not MISSING:
            return memo
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:
            self._wait(self._ex.record_failure(key, exc))
            raise
        return self._wait(self._ex.record(key, value))

    def sleep(self, name: str, duration: Duration) -> None:
        """Suspend the run for `duration` (see Step.sleep)."""
        self._wait(waits.sleep(self._ex, name, duration))

    def sleep_until(self, name: str, when: datetime) -> None:
        """Suspend the run until `when`."""
        self._wait(waits.sleep(self._ex, name, until=when))

    def wait_for_event(
        self,
        name: str,
        event: str,
        match: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        lookback: Duration = 0,
    ) -> Event | None:
        """Suspend until a matching event arrives, or None after `timeout`."""
        return self._wait(waits.wait_for_event(self._ex, name, event, match, timeout, lookback))  # type: ignore[no-any-return]

    def invoke(
        self, name: str, job: str, payload: Any = None, timeout: Duration | None = None
    ) -> Any:
        """Run `job` as a child run and return its result."""
        return self._wait(waits.invoke(self._ex, name, job, payload, timeout))

    def send_event(self, name: str, event: str, data: Any = None) -> dict[str, Any]:
        """Send an event exactly once for this run."""
        return self._wait(waits.send_event(self._ex, name, event, data))  # type: ignore[no-any-return]


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

    def __init__(
        self,
        execution: Execution,
        step: SyncStep,
        state: Callable[[], SyncState],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
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


from . import waits  # noqa: E402  (waits builds on Execution and Suspended above)
