"""Parking: the durable waits of one attempt park the run together.

A wait (sleep, wait_for_event, invoke) first registers in Redis as a pending wait of the
running run and the attempt goes on, so the other branches of an `asyncio.gather` start
theirs too (children invoked together run in parallel). Once every branch is at a durable
wait (no step running, no wait being registered, for a few turns of the event loop) one
`park` call either returns the records of the waits that have settled meanwhile (those
branches go on) or parks the run until the first of them settles, and every pending wait
raises Suspended: the attempt ends without holding a worker slot. When the run resumes,
the handler runs from the top: settled waits return their records, the others are still
registered (no second child, no second waiter) and the attempt parks again.

A wait that the handler itself awaits while nothing else runs registers and parks in one
call. "Every branch is at a durable wait" is decided from the state of the handler's tasks
(quiescence.py), not from loop timing: no step runs, no wait registers, and following what
the handler's task awaits (gathers, asyncio.wait, TaskGroups, tasks) every branch ends at
a registered wait. A branch in a plain await (an HTTP call, asyncio.sleep) keeps the run
from parking until it ends or reaches a wait, so no unrecorded work is cut off; the
handler's own task running (it may be about to cancel a wait) does too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from .._core.namespace import Namespace
from ..errors import RunCancelled
from . import quiescence

RECHECK_S = 0.1  # quiescence is re-checked when the awaited future ends, or this often


class Suspended(BaseException):
    """The run was suspended (sleep, event or child wait): its attempt ends, nothing to record."""


class CancelRequested(RunCancelled):
    """Raised at a step boundary when the run was cancelled while running."""


class Parking:
    """What the waits of one attempt share: which are registered, which are awaited now,
    and whether the attempt has parked the run."""

    def __init__(
        self,
        ns: Namespace,
        run_id: str,
        token: str,
        registered: Iterable[str] = (),
        on_park: Callable[[str, str], None] | None = None,
    ) -> None:
        self.ns = ns
        self.run_id = run_id
        self.token = token
        self.registered = set(registered)  # steps with a pending wait in Redis
        self.on_park = on_park  # called with (step, kind) for each wait the park ends
        self.parked = False
        self.closed = False  # the handler returned or raised
        self._sending = False  # a park call is in flight
        self.parking_calls = 0  # calls in flight that may park the run (and end its lease)
        self.root: asyncio.Task[Any] | None = None  # the task running the handler
        self.sync = False  # a plain-function handler: its waits come one at a time
        self.active = 0  # steps running and waits being registered
        self._idle = asyncio.Event()
        self._idle.set()
        self._awaited: dict[str, tuple[asyncio.Future[bytes], str]] = {}
        self._parker: asyncio.Task[None] | None = None
        self._order: dict[str, int] = {}  # wait step -> when the handler began it

    @property
    def ending(self) -> bool:
        """The attempt parked the run, or a call that may park it is in flight: a lease
        found gone meanwhile was ended by the park, not lost to another worker."""
        return self.parked or self.parking_calls > 0

    def begin(self, step: str) -> None:
        """A wait step begins (in the handler's order: a park lists its steps so)."""
        self._order.setdefault(step, len(self._order))

    @asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        """Mark a step or a wait registration in flight: the attempt does not park meanwhile."""
        self.active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.active -= 1
            if self.active == 0:
                self._idle.set()

    async def alone(self) -> bool:
        """Called by a wait about to register (inside `busy`): let the other branches of a
        gather start, then True when nothing else runs and the handler itself awaits this
        wait (a branch of a gather or a race does not park at once: see _quiet)."""
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        mine = self.sync or asyncio.current_task() is self.root
        return mine and self.active <= 1 and not self._awaited

    def parked_now(self, step: str, kind: str, here: bool) -> BaseException:
        """A wait call parked the run (`here`) or found it parked: the attempt ends."""
        self.parked = True
        if here and self.on_park:
            self.on_park(step, kind)
        return self.stopped(step)

    def stopped(self, step: str) -> BaseException:
        """What a step or wait raises once the attempt parked or ended: Suspended in the
        handler's own task (the executor ends the attempt), CancelledError in a branch
        task (it stops quietly: no "exception was never retrieved")."""
        if self.sync or self.root is None or asyncio.current_task() is self.root:
            return Suspended(step)
        return asyncio.CancelledError()

    async def settled(self, step: str, kind: str) -> bytes:
        """Await pending wait `step`: its step record once it settles. Raises Suspended
        when the attempt parks the run instead."""
        if self.parked or self.closed:  # closed: a branch left behind (redis-py may
            raise self.stopped(step)  # finish a call whose task was cancelled): it stops
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._awaited[step] = (fut, kind)
        if self._parker is None or self._parker.done():
            self._parker = asyncio.create_task(self._park_when_quiet())
        try:
            return await fut
        finally:
            if step in self._awaited and self._awaited[step][0] is fut:
                del self._awaited[step]

    async def close(self) -> None:
        """The handler returned or raised: nothing may park the run any more. A park call
        already sent decides the attempt's outcome (`parked`), so it is awaited."""
        self.closed = True
        parker = self._parker
        if parker is None or parker.done():
            return
        if not self._sending:
            parker.cancel()
            return
        with contextlib.suppress(BaseException):
            await asyncio.shield(parker)

    async def _quiet(self) -> None:
        """Return once no step runs, no wait registers and every branch the handler awaits
        is blocked on one of its waits (quiescence.check)."""
        while True:
            if self.active:
                await self._idle.wait()
                continue
            waits = [fut for fut, _ in self._awaited.values() if not fut.done()]
            blocked, watch = quiescence.check(self.root, waits)
            if blocked:
                return
            if watch is None:  # a task is about to run: look again after it did
                await asyncio.sleep(0)
            else:
                await quiescence.until_done(watch, RECHECK_S)

    def _still_awaited(self, steps: list[str]) -> list[tuple[str, asyncio.Future[bytes], str]]:
        """(step, future, kind) of `steps` still awaited (a branch may have been cancelled)."""
        out = [(s, *self._awaited[s]) for s in steps if s in self._awaited]
        return [(s, fut, kind) for s, fut, kind in out if not fut.done()]

    def _stop_handler(self, steps: list[str]) -> None:
        """The run is parked: the handler stops where it awaits (its task is cancelled and
        turns that into Suspended, see Executor; the awaiting branches are cancelled), so
        no code after an asyncio.wait or gather runs. A plain-function handler's waits
        raise Suspended in its thread."""
        self.parked = True
        awaited = self._still_awaited(steps)
        for step, fut, kind in awaited:
            if self.on_park:
                self.on_park(step, kind)
            if self.sync:
                fut.set_exception(Suspended(step))
        if self.sync:
            return
        if self.root is not None:
            self.root.cancel()
        for _, fut, _ in awaited:
            fut.cancel()

    def _pending(self) -> list[str]:
        steps = [s for s, (fut, _) in self._awaited.items() if not fut.done()]
        return sorted(steps, key=lambda s: self._order.get(s, len(self._order)))

    async def _park_when_quiet(self) -> None:
        try:
            while True:
                await self._quiet()
                steps = self._pending()
                if not steps or self.closed:
                    return
                self._sending = True
                self.parking_calls += 1
                try:
                    reply = await self.ns.scripts_of(self.run_id).park(
                        self.run_id, self.token, steps
                    )
                finally:
                    self._sending = False
                    self.parking_calls -= 1
                if reply.cancel:  # not parked: the attempt stops
                    cancel = CancelRequested(f"run {self.run_id} cancelled", run_id=self.run_id)
                    for _, fut, _ in self._still_awaited(steps):
                        fut.set_exception(cancel)
                    return
                if reply.parked:
                    self._stop_handler(steps)
                    return
                for step, record in reply.settled.items():
                    self.registered.discard(step)
                    awaited = self._awaited.get(step)
                    if awaited is not None and not awaited[0].done():
                        awaited[0].set_result(record)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the park call failed: every awaited wait fails with it
            for fut, _ in self._awaited.values():
                if not fut.done():
                    fut.set_exception(exc)
