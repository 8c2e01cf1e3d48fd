""" "Now" on the Python side: the one place Python reads the wall clock.

Lua scripts read the Redis server clock (lua/lib/now_ms.lua); Python stamps a few values
of its own (run ids, step records, event timestamps) with `now_ns()`. `TestEnv`
(testing.py) moves both to one virtual clock: it swaps the function here with
`use(...)` and renders the scripts with the virtual `now_ms` (luasrc.source with a
clock key). Production pays one module attribute lookup per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_source: Callable[[], int] = time.time_ns


def now_ns() -> int:
    """Wall-clock time in epoch nanoseconds (virtual inside a TestEnv)."""
    return _source()


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds (virtual inside a TestEnv)."""
    return _source() // 1_000_000


def use(source: Callable[[], int] | None) -> Callable[[], int]:
    """Read time from `source` (epoch ns) from now on, or the system clock for None;
    returns the previous source so that the caller can put it back."""
    global _source
    previous = _source
    _source = source if source is not None else time.time_ns
    return previous
