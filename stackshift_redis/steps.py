"""The step API of handlers: `Step` (async handlers) and `SyncStep` (plain functions, in a
worker thread). A step's result is stored once and reused by later attempts."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from . import waits
from .execution import MISSING, Execution
from .hooks import StepInput
from .records import Duration, Event

T = TypeVar("T")


async def _hooked(ex: Execution, name: str, kind: str, call: Callable[[], Awaitable[T]]) -> T:
    if not ex.ns.hooks or (kind != "run" and ex.replayed(name)):  # replayed wait: not hooked
        return await call()
    result: T = await ex.ns.hooks.step(StepInput(ex.hook_input, name, kind), call)
    return result


async def _run_step(ex: Execution, name: str, fn: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Any:  # fmt: skip
    key, memo = ex.lookup(name)
    if memo is not MISSING:
        return memo

    async def body() -> Any:
        await ex.ensure_lease()
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            await ex.record_failure(key, exc)
            raise
        return await ex.record(key, value)

    return await _hooked(ex, name, "run", body)


class Step:
    """Steps inside an async handler: results are stored once and reused on later attempts."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution

    async def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` once for this run (sync or async) and store its result."""
        return await _run_step(self._ex, name, fn, *args, **kwargs)

    async def sleep(self, name: str, duration: Duration) -> None:
        """Suspend the run for `duration` without holding a worker slot."""
        await _hooked(self._ex, name, "sleep", lambda: waits.sleep(self._ex, name, duration))

    async def sleep_until(self, name: str, when: datetime) -> None:
        """Suspend the run until `when` (naive datetimes are UTC)."""
        await _hooked(self._ex, name, "sleep", lambda: waits.sleep(self._ex, name, until=when))

    async def wait_for_event(
        self,
        name: str,
        event: str,
        match: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        lookback: Duration = 0,
    ) -> Event | None:
        """Suspend until a matching event arrives (its Event), or None after `timeout`."""
        return await _hooked(
            self._ex, name, "wait_for_event",
            lambda: waits.wait_for_event(self._ex, name, event, match, timeout, lookback),
        )  # fmt: skip

    async def invoke(
        self, name: str, job: str, payload: Any = None, timeout: Duration | None = None
    ) -> Any:
        """Run `job` as a child run and return its result (RunFailed if it fails)."""
        return await _hooked(
            self._ex, name, "invoke", lambda: waits.invoke(self._ex, name, job, payload, timeout)
        )

    async def send_event(self, name: str, event: str, data: Any = None) -> dict[str, Any]:
        """Send an event exactly once for this run; {id, resumed, started}."""
        return await _hooked(
            self._ex, name, "send_event", lambda: waits.send_event(self._ex, name, event, data)
        )


class SyncStep:
    """Steps inside a plain-function handler (running in a worker thread)."""

    def __init__(self, execution: Execution, loop: asyncio.AbstractEventLoop) -> None:
        self._ex = execution
        self._loop = loop

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` once for this run, in this thread, and store its result."""
        ex = self._ex
        key, memo = ex.lookup(name)
        if memo is not MISSING:
            return memo

        def body() -> Any:
            self._wait(ex.ensure_lease())
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                self._wait(ex.record_failure(key, exc))
                raise
            return self._wait(ex.record(key, value))

        if not ex.ns.hooks:
            return body()
        return ex.ns.hooks.step_sync(StepInput(ex.hook_input, name, "run"), body)

    def sleep(self, name: str, duration: Duration) -> None:
        """Suspend the run for `duration` (see Step.sleep)."""
        self._wait(Step(self._ex).sleep(name, duration))

    def sleep_until(self, name: str, when: datetime) -> None:
        """Suspend the run until `when`."""
        self._wait(Step(self._ex).sleep_until(name, when))

    def wait_for_event(
        self,
        name: str,
        event: str,
        match: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        lookback: Duration = 0,
    ) -> Event | None:
        """Suspend until a matching event arrives, or None after `timeout`."""
        return self._wait(Step(self._ex).wait_for_event(name, event, match, timeout, lookback))

    def invoke(
        self, name: str, job: str, payload: Any = None, timeout: Duration | None = None
    ) -> Any:
        """Run `job` as a child run and return its result."""
        return self._wait(Step(self._ex).invoke(name, job, payload, timeout))

    def send_event(self, name: str, event: str, data: Any = None) -> dict[str, Any]:
        """Send an event exactly once for this run."""
        return self._wait(Step(self._ex).send_event(name, event, data))
