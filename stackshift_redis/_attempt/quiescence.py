"""Quiescence: is every branch a handler awaits blocked on a durable wait?

Parking (parking.py) asks this before it parks a run, and the answer comes from the state
of the handler's tasks, not from how many turns of the event loop passed: from the
handler's task, follow what each task awaits (`Task._fut_waiter`):

- one of the attempt's wait futures (a registered sleep, event or child wait): blocked;
- a task: what that task awaits; a task that awaits nothing is about to run: not blocked;
- a gather: each of its unfinished children;
- any other future (asyncio.wait, TaskGroup, wait_for, shield): not blocked while a
  callback ready to run on the loop would complete it (a task that just ended); else the
  tasks whose done callbacks complete it (found among the loop's tasks); when none does,
  it is a plain await (a timer, a socket, a thread): not blocked, and the future to watch;
- a future that is done: its task is about to run: not blocked.

So a branch in a plain `await` (an HTTP call, `asyncio.sleep`) keeps the run from parking
until that await ends, whatever the loop's timing; the caller re-checks when the future
it was given completes (or after one loop turn when a task is about to run). asyncio's
`_fut_waiter`, `_children`, `_callbacks` and the loop's `_ready` queue are private
attributes of CPython's asyncio (3.11 to 3.13); tests/test_quiescence.py pins them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection
from typing import Any

Verdict = tuple[bool, "asyncio.Future[Any] | None"]  # blocked; else a future to watch


def _refers(cb: Callable[..., Any], fut: asyncio.Future[Any]) -> bool:
    """True when callback `cb` holds `fut` (a closure cell, a partial's argument, or an
    attribute of the object a bound method belongs to)."""
    if isinstance(cb, functools.partial):
        return any(a is fut for a in cb.args) or _refers(cb.func, fut)
    owner = getattr(cb, "__self__", None)
    if owner is not None and owner is not fut and hasattr(owner, "__dict__"):
        return any(v is fut for v in vars(owner).values()) or _cells_hold(cb, fut)
    return _cells_hold(cb, fut)


def _cells_hold(cb: Callable[..., Any], fut: asyncio.Future[Any]) -> bool:
    for cell in getattr(cb, "__closure__", None) or ():
        try:
            if cell.cell_contents is fut:
                return True
        except ValueError:  # an empty cell
            continue
    return False


def _drivers(fut: asyncio.Future[Any]) -> list[asyncio.Task[Any]]:
    """The unfinished tasks whose done callbacks would complete `fut`."""
    out = []
    for task in asyncio.all_tasks():
        callbacks = getattr(task, "_callbacks", None) or ()
        if not task.done() and any(_refers(cb, fut) for cb, _ in callbacks):
            out.append(task)
    return out


def _scheduled(fut: asyncio.Future[Any]) -> bool:
    """True when a callback ready to run on the loop holds `fut` (a task that just ended
    and whose done callbacks, for example asyncio.wait's, have not run yet)."""
    ready = getattr(asyncio.get_running_loop(), "_ready", None) or ()
    for handle in ready:
        cb = getattr(handle, "_callback", None)
        args = getattr(handle, "_args", None) or ()
        if any(a is fut for a in args) or (cb is not None and _refers(cb, fut)):
            return True
    return False


def check(root: asyncio.Task[Any] | None, waits: Collection[asyncio.Future[Any]]) -> Verdict:
    """Whether every branch `root` awaits is blocked on one of `waits`; when not, a
    future whose completion may change the answer (None: a task is about to run)."""
    if root is None:  # a plain-function handler: its waits come one at a time
        return True, None
    return _blocked(root, {id(w) for w in waits}, set())


def _blocked(fut: asyncio.Future[Any], waits: set[int], seen: set[int]) -> Verdict:
    if fut.done():
        return False, None
    if id(fut) in waits:
        return True, None
    if id(fut) in seen:  # already followed on this walk
        return True, None
    seen.add(id(fut))
    if isinstance(fut, asyncio.Task):
        waiter = getattr(fut, "_fut_waiter", None)
        return (False, None) if waiter is None else _blocked(waiter, waits, seen)
    children = getattr(fut, "_children", None)  # asyncio.gather
    deps: list[asyncio.Future[Any]]
    if children is not None:
        deps = [c for c in children if not c.done()]
    else:
        if _scheduled(fut):  # a callback that completes it is about to run
            return False, None
        deps = list(_drivers(fut))
        if not deps:
            return False, fut  # a plain await
    if not deps:
        return False, None  # all done: the gather completes now
    for dep in deps:
        verdict = _blocked(dep, waits, seen)
        if not verdict[0]:
            return verdict
    return True, None


async def until_done(fut: asyncio.Future[Any], at_most: float) -> None:
    """Return once `fut` is done, or after `at_most` seconds (without awaiting it: it
    belongs to another task, and cancelling this must not cancel it)."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake(_: object) -> None:
        if not woken.done():
            woken.set_result(None)

    fut.add_done_callback(wake)
    handle = loop.call_later(at_most, wake, None)
    try:
        await woken
    finally:
        fut.remove_done_callback(wake)
        handle.cancel()
