"""Job definitions: the registry entry behind `@app.job(...)` and retry backoff."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError
from .keys import check_name
from .records import Duration, seconds

BackoffFn = Callable[[int], float]
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0


def default_backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: base 1 s doubling per attempt, capped at 5 min."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def make_backoff(backoff: BackoffFn | Duration | None) -> BackoffFn:
    """A backoff function from a callable(attempt) -> seconds, a fixed duration, or None."""
    if backoff is None:
        return default_backoff
    if callable(backoff):
        return backoff
    fixed = seconds(backoff, "backoff")
    return lambda _attempt: fixed


@dataclass(frozen=True)
class JobDef:
    """A registered job: its handler and execution policy."""

    name: str
    fn: Callable[..., Any]
    queue: str
    retries: int
    backoff: BackoffFn
    timeout: float | None
    on_event: str | None
    idempotency_ttl: float | None

    @property
    def is_async(self) -> bool:
        """True when the handler is a coroutine function."""
        return inspect.iscoroutinefunction(self.fn)


def make_job(
    name: str,
    fn: Callable[..., Any],
    *,
    queue: str,
    retries: int,
    backoff: BackoffFn | Duration | None,
    timeout: Duration | None,
    on_event: str | None,
    idempotency_ttl: Duration | None,
) -> JobDef:
    """Validate options and build a JobDef."""
    check_name("job", name)
    check_name("queue", queue)
    if on_event is not None:
        check_name("event", on_event)
    if not callable(fn):
        raise InvalidArgumentError(f"job {name!r}: handler {fn!r} is not callable")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InvalidArgumentError(f"job {name!r}: retries must be an int >= 0")
    return JobDef(
        name=name,
        fn=fn,
        queue=queue,
        retries=retries,
        backoff=make_backoff(backoff),
        timeout=seconds(timeout, "timeout") if timeout is not None else None,
        on_event=on_event,
        idempotency_ttl=(
            seconds(idempotency_ttl, "idempotency_ttl") if idempotency_ttl is not None else None
        ),
    )
