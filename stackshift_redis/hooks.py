"""The hook seam: interceptors around attempts and steps, and notices of what runs do.

Metrics, tracing and structured logs each live in one module that adds a `Hook` here;
nothing else in the worker knows about them. Modelled on Temporal's interceptors: an input
dataclass per intercept point, and a chain in which each hook calls `proceed()` (or
raises). With no hook added, the worker calls handlers and steps directly: no cost.

    Hook.attempt(inp, proceed)     around one attempt (the handler call)
    Hook.step(inp, proceed)        around one step of an async handler (a step that returns
                                   its stored result on a later attempt is not hooked again)
    Hook.step_sync(inp, proceed)   around one step of a plain-function handler (its thread)
    Hook.suspended(inp, step, kind)  the attempt parked the run (sleep, event, child)
    Hook.finished(inp, outcome, error)  once Redis answered the script that records the
                                   outcome: completed | retry | failed | cancelled |
                                   handed_back (a job this worker does not register) as
                                   recorded, or lost | unconfirmed when it was not
    Hook.start_fields(job, queue)  client side: fields stored with each new run (for
                                   example a trace context), read back in AttemptInput.fields;
                                   job and queue are '' for the runs an event starts
    Hook.event_sent(name, resumed, started)  client side: an event was recorded (not a
                                   duplicate): run ids it resumed and started

`Hooks.defer(factory)` adds a hook decided at first use (tracing: on only when an
OpenTelemetry SDK is configured by then); until then, and when it declines, nothing runs.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Proceed = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class AttemptInput:
    """One attempt of a run on a worker."""

    run_id: str
    job: str
    queue: str
    attempt: int  # as ctx.attempt: failed attempts + 1 (a resume keeps it)
    resumed: bool  # the run waited (sleep, event, child) and this attempt continues it
    fields: dict[str, str] = field(default_factory=dict)  # stored by Hook.start_fields
    first: bool = False  # the run's first execution (not a retry, resume or recovery)
    waited: float = 0.0  # seconds from ready to taken (server clock): the queue wait
    resumed_by: str = ""  # resumed: event | timer | child_ok | child_failed
    execution: int = 1  # executions of the run so far, this one included (every take
    # counts: resumes and recoveries too; RunInfo.executions)


@dataclass(frozen=True)
class StepInput:
    """One step inside an attempt."""

    attempt: AttemptInput
    name: str  # as the handler gave it (a repeated name is stored with a #n suffix)
    kind: str  # run | transact | sleep | wait_for_event | invoke | send_event


class Hook:
    """Base class: every method passes through. Override what you need."""

    async def attempt(self, inp: AttemptInput, proceed: Proceed) -> Any:
        """Around one attempt; return what `proceed()` returns. `proceed()` runs the
        handler and records its outcome: it returns once Redis answered, and raises what
        the handler raised, or LeaseLostError / the Redis error when the outcome could
        not be recorded (see `finished`)."""
        return await proceed()

    async def step(self, inp: StepInput, proceed: Proceed) -> Any:
        """Around one step of an async handler."""
        return await proceed()

    def step_sync(self, inp: StepInput, proceed: Callable[[], Any]) -> Any:
        """Around one step of a plain-function handler (called in its thread)."""
        return proceed()

    def suspended(self, inp: AttemptInput, step: str, kind: str) -> None:
        """The attempt parked the run at `step` (kind: sleep | event | child)."""

    def finished(self, inp: AttemptInput, outcome: str, error: BaseException | None) -> None:
        """The attempt ended, told once Redis answered the script that records its
        outcome (never before): `completed`, `retry`, `failed`, `cancelled` or
        `handed_back` (a run of a job this worker does not register) as recorded, with
        `error` the exception that ended the attempt (None when completed).

        `lost`: nothing was recorded because another worker holds the run now (its lease
        expired and was taken, during the attempt or before the outcome reached Redis);
        `error` is the LeaseLostError. `unconfirmed`: Redis did not confirm the record
        (unreachable after the worker's retries, or an error reply); `error` is that
        error. The run is then most likely not recorded and is taken again once its
        lease expires (its completed steps are reused). A parked run is told through
        `suspended` instead; an attempt cut off by a stop is not told."""

    def start_fields(self, job: str, queue: str) -> dict[str, str]:
        """Fields to store with a run being started in this process (client side)."""
        return {}

    def event_sent(self, name: str, resumed: list[str], started: list[str]) -> None:
        """An event was recorded (client side; duplicates are not reported)."""


class Hooks:
    """The chain of hooks of one app, in the order they were added."""

    def __init__(self) -> None:
        self._hooks: list[Hook] = []
        self._deferred: list[Callable[[], Hook | None]] = []
        self._lock = threading.Lock()  # first use may come from two threads (sync facade)

    def add(self, hook: Hook) -> None:
        """Add a hook; it wraps inside the hooks added before it."""
        self._hooks.append(hook)

    def defer(self, factory: Callable[[], Hook | None]) -> None:
        """Add the hook `factory()` returns when the chain is first used (None: no hook)."""
        self._deferred.append(factory)

    def __bool__(self) -> bool:
        if self._deferred:
            with self._lock:
                factories, self._deferred = self._deferred, []
                for factory in factories:
                    hook = factory()
                    if hook is not None:
                        self._hooks.append(hook)
        return bool(self._hooks)

    async def attempt(self, inp: AttemptInput, call: Proceed) -> Any:
        """`call()` inside every hook's `attempt`."""
        for hook in reversed(self._hooks):
            call = _bind_attempt(hook, inp, call)
        return await call()

    async def step(self, inp: StepInput, call: Proceed) -> Any:
        """`call()` inside every hook's `step`."""
        for hook in reversed(self._hooks):
            call = _bind_step(hook, inp, call)
        return await call()

    def step_sync(self, inp: StepInput, call: Callable[[], Any]) -> Any:
        """`call()` inside every hook's `step_sync`."""
        for hook in reversed(self._hooks):
            call = _bind_step_sync(hook, inp, call)
        return call()

    def suspended(self, inp: AttemptInput, step: str, kind: str) -> None:
        """Tell every hook the run was parked."""
        for hook in self._hooks:
            hook.suspended(inp, step, kind)

    def finished(self, inp: AttemptInput, outcome: str, error: BaseException | None) -> None:
        """Tell every hook the attempt ended."""
        for hook in self._hooks:
            hook.finished(inp, outcome, error)

    def start_fields(self, job: str, queue: str) -> dict[str, str]:
        """The fields every hook stores with a new run."""
        out: dict[str, str] = {}
        for hook in self._hooks:
            out.update(hook.start_fields(job, queue))
        return out

    def event_sent(self, name: str, resumed: list[str], started: list[str]) -> None:
        """Tell every hook an event was recorded."""
        for hook in self._hooks:
            hook.event_sent(name, resumed, started)


def _bind_attempt(hook: Hook, inp: AttemptInput, call: Proceed) -> Proceed:
    return lambda: hook.attempt(inp, call)


def _bind_step(hook: Hook, inp: StepInput, call: Proceed) -> Proceed:
    return lambda: hook.step(inp, call)


def _bind_step_sync(hook: Hook, inp: StepInput, call: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: hook.step_sync(inp, call)
