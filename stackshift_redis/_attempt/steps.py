"""The step API of handlers: `Step` (async handlers) and `SyncStep` (plain functions, in a
worker thread). A step's result is stored once and reused by later attempts."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from .._core.records import Duration, Event
from ..errors import NonRetriableError
from ..hooks import StepInput
from . import transact as tx_mod
from . import waits
from .execution import MISSING, Execution
from .statetx import SyncStateTx

T = TypeVar("T")


async def _hooked(ex: Execution, name: str, kind: str, call: Callable[[], Awaitable[T]]) -> T:
    if not ex.ns.hooks or (kind != "run" and ex.replayed(name)):  # replayed wait: not hooked
        return await call()
    result: T = await ex.ns.hooks.step(StepInput(ex.hook_input, name, kind), call)
    return result


async def _call_off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a step's `fn`: a coroutine function on the loop; a plain function in a thread
    (asyncio.to_thread), so a blocking call cannot stop lease renewal. A plain function
    that returns an awaitable (a lambda around a coroutine) has it awaited on the loop."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with async __call__
    ):
        value = fn(*args, **kwargs)
    else:
        value = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


async def _run_step(
    ex: Execution, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    key, memo = ex.lookup(name)
    if memo is not MISSING:
        return memo

    async def body() -> Any:
        async with ex.parking.busy():  # the attempt does not park while a step runs
            await ex.ensure_lease()
            try:
                value = await _call_off_loop(fn, *args, **kwargs)
            except Exception as exc:
                await ex.record_failure(key, exc)
                raise
            return await ex.record(key, value)

    return await _hooked(ex, name, "run", body)


async def _transact_step(
    ex: Execution, name: str, fn: Callable[..., Any], max_conflicts: int, *args: Any, **kw: Any
) -> Any:
    key, memo = ex.lookup(name)
    if memo is not MISSING:
        return memo

    async def body() -> Any:
        async with ex.parking.busy():
            await ex.ensure_lease()
            for n in range(max_conflicts + 1):
                if n:
                    await asyncio.sleep(tx_mod.pause(n))
                tx = tx_mod.new_tx(ex, key)
                try:
                    value = fn(tx, *args, **kw)
                    if inspect.isawaitable(value):
                        value = await value
                except Exception as exc:
                    await ex.record_failure(key, exc)
                    raise
                out = await tx_mod.commit(ex, key, tx, value)
                if out is not tx_mod.CONFLICT:
                    return out
            await tx_mod.conflicted(ex, key, max_conflicts)

    return await _hooked(ex, name, "transact", body)


class Step:
    """Steps inside an async handler: results are stored once and reused on later attempts.

    Each method returns a coroutine to await (alone or in `asyncio.gather`). A step that is
    created but never awaited (a forgotten `await`) fails the attempt without retries:
    "step 'charge' was created but never awaited"."""

    def __init__(self, execution: Execution) -> None:
        self._ex = execution
        self._created: list[tuple[str, Coroutine[Any, Any, Any]]] = []

    def _track(self, name: str, coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
        if len(self._created) >= 256:  # forget the ones already started
            self._created = [(n, c) for n, c in self._created if _unstarted(c)]
        self._created.append((name, coro))
        return coro

    def unawaited(self) -> list[str]:
        """Names of steps created but never awaited (closed here, so Python does not warn)."""
        names = [n for n, c in self._created if _unstarted(c)]
        for _, c in self._created:
            if _unstarted(c):
                c.close()
        self._created = []
        return names

    def run(
        self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, Any]:
        """Run `fn(*args, **kwargs)` once for this run and store its result: an async `fn`
        on the event loop, a plain `fn` in a thread (a blocking call cannot stop lease
        renewal)."""
        return self._track(name, _run_step(self._ex, name, fn, *args, **kwargs))

    def transact(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        max_conflicts: int = 10,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, Any]:
        """Run `fn(tx, *args, **kwargs)` with a StateTx and commit its state writes, events,
        starts and result together, exactly once (see transact.py); a key it read that
        changed before the commit runs it again, at most `max_conflicts` times, then the
        step fails with TransactionConflictError."""
        tx_mod.check_conflicts(max_conflicts)
        return self._track(name, _transact_step(self._ex, name, fn, max_conflicts, *args, **kwargs))

    def sleep(self, name: str, duration: Duration) -> Coroutine[Any, Any, None]:
        """Suspend the run for `duration` without holding a worker slot."""
        ex = self._ex
        return self._track(
            name, _hooked(ex, name, "sleep", lambda: waits.sleep(ex, name, duration))
        )

    def sleep_until(self, name: str, when: datetime) -> Coroutine[Any, Any, None]:
        """Suspend the run until `when` (naive datetimes are UTC)."""
        ex = self._ex
        return self._track(
            name, _hooked(ex, name, "sleep", lambda: waits.sleep(ex, name, until=when))
        )

    def wait_for_event(
        self,
        name: str,
        event: str,
        match: dict[str, Any] | None = None,
        timeout: Duration | None = None,
        lookback: Duration = 0,
    ) -> Coroutine[Any, Any, Event | None]:
        """Suspend until a matching event arrives (its Event), or None after `timeout`.
        Match values compare by type too: 12345 does not match "12345"."""
        ex = self._ex
        return self._track(
            name,
            _hooked(
                ex,
                name,
                "wait_for_event",
                lambda: waits.wait_for_event(ex, name, event, match, timeout, lookback),
            ),
        )

    def invoke(
        self, name: str, job: str, payload: Any = None, timeout: Duration | None = None
    ) -> Coroutine[Any, Any, Any]:
        """Run `job` as a child run and return its result. When the child fails (or is
        cancelled, or times out) this raises RunFailed, and the failure is stored: if the
        handler does not catch it, the parent fails at once without retries (a retry would
        only re-raise it). To try the child again, catch RunFailed and invoke it under a
        new step name."""
        ex = self._ex
        return self._track(
            name,
            _hooked(ex, name, "invoke", lambda: waits.invoke(ex, name, job, payload, timeout)),
        )

    def send_event(
        self, name: str, event: str, data: Any = None
    ) -> Coroutine[Any, Any, dict[str, Any]]:
        """Send an event exactly once for this run; {id, resumed, started}."""
        ex = self._ex
        return self._track(
            name, _hooked(ex, name, "send_event", lambda: waits.send_event(ex, name, event, data))
        )


def _unstarted(coro: Coroutine[Any, Any, Any]) -> bool:
    return inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


_ASYNC_IN_SYNC = (
    "step {name!r}: {fn} is async, but this handler is a plain function (def), whose steps "
    "call fn in the worker thread. Make the handler `async def` and `await "
    "ctx.step.run(...)`, or pass a plain function (wrap async code with asyncio.run)."
)


def _fn_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class SyncStep:
    """Steps inside a plain-function handler (running in a worker thread)."""

    def __init__(self, execution: Execution, loop: asyncio.AbstractEventLoop) -> None:
        self._ex = execution
        self._loop = loop

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _once(
        self, name: str, fn: Callable[..., Any], kind: str, body: Callable[[str], Any]
    ) -> Any:
        """A step's stored result, else `body(step key)` in this thread (through the
        hooks); a coroutine function is refused (it cannot run in a worker thread)."""
        ex = self._ex
        key, memo = ex.lookup(name)
        if memo is not MISSING:
            return memo
        if inspect.iscoroutinefunction(fn):
            raise NonRetriableError(_ASYNC_IN_SYNC.format(name=name, fn=_fn_name(fn)))
        if not ex.ns.hooks:
            return body(key)
        return ex.ns.hooks.step_sync(StepInput(ex.hook_input, name, kind), lambda: body(key))

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn(*args, **kwargs)` once for this run, in this thread, and store its result."""
        ex = self._ex

        def body(key: str) -> Any:
            self._wait(ex.ensure_lease())
            try:
                value = fn(*args, **kwargs)
                if inspect.isawaitable(value):
                    if inspect.iscoroutine(value):
                        value.close()
                    raise NonRetriableError(_ASYNC_IN_SYNC.format(name=name, fn=_fn_name(fn)))
            except Exception as exc:
                self._wait(ex.record_failure(key, exc))
                raise
            return self._wait(ex.record(key, value))

        return self._once(name, fn, "run", body)

    def transact(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        max_conflicts: int = 10,
        **kwargs: Any,
    ) -> Any:
        """Run `fn(tx, *args, **kwargs)` in this thread with a blocking StateTx and commit
        its writes, events, starts and result together, exactly once (see Step.transact)."""
        ex = self._ex
        tx_mod.check_conflicts(max_conflicts)

        def body(key: str) -> Any:
            self._wait(ex.ensure_lease())
            for n in range(max_conflicts + 1):
                if n:
                    time.sleep(tx_mod.pause(n))
                tx = tx_mod.new_tx(ex, key)
                try:
                    value = fn(SyncStateTx(tx, self._loop), *args, **kwargs)
                except Exception as exc:
                    self._wait(ex.record_failure(key, exc))
                    raise
                out = self._wait(tx_mod.commit(ex, key, tx, value))
                if out is not tx_mod.CONFLICT:
                    return out
            self._wait(tx_mod.conflicted(ex, key, max_conflicts))

        return self._once(name, fn, "transact", body)

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
