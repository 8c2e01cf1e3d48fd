"""The exception tree of stackshift_redis.

    StackShiftError
    ├── NonRetriableError        raised by a handler: fail the run at once
    ├── RetryAfterError          raised by a handler: retry after `delay`
    ├── RunFailed                a run (or a child run) ended as failed
    ├── RunCancelled             a run ended as cancelled
    ├── UnknownJobError          (LookupError) no such job, or no queue known for it
    ├── PayloadError             (ValueError) a value does not serialize, or is too large
    ├── InvalidArgumentError     (ValueError) a bad name, duration or option
    ├── RunNotFoundError         (LookupError) no such run (or it expired)
    ├── ScheduleNotFoundError    (LookupError) no such schedule
    ├── InvalidRunStateError     the run's status does not allow the operation
    ├── RunDataError             a run's stored record is damaged (unreadable fields)
    ├── LockError                a lock was not acquired, or was lost
    ├── LeaseLostError           a worker's claim on a run was taken over
    ├── TransactionConflictError a transactional step kept meeting concurrent writes
    ├── RedisUnavailableError    (redis ConnectionError) Redis cannot be reached
    ├── LayoutError              the namespace's storage layout is newer than this code
    ├── StaleDefinitionsError    (internal) the published job definitions changed
    └── ResultTimeout            (TimeoutError) `result()` waited too long

Lua scripts report errors as `redis.error_reply('CODE detail')`; `from_redis_error`, the
one place that maps codes to this tree, is called by the `scripts` package alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = [
    "InvalidArgumentError",
    "InvalidRunStateError",
    "LayoutError",
    "LeaseLostError",
    "LockError",
    "NonRetriableError",
    "PayloadError",
    "RedisUnavailableError",
    "ResultTimeout",
    "RetryAfterError",
    "RunCancelled",
    "RunDataError",
    "RunFailed",
    "RunNotFoundError",
    "ScheduleNotFoundError",
    "StackShiftError",
    "TransactionConflictError",
    "UnknownJobError",
]


class StackShiftError(Exception):
    """Base of every error raised by stackshift_redis."""


class NonRetriableError(StackShiftError):
    """Raise in a handler to fail the run now, without further retries."""


class RetryAfterError(StackShiftError):
    """Raise in a handler to retry the run after `delay` (seconds or timedelta)."""

    def __init__(self, delay: float | timedelta, message: str = "") -> None:
        self.delay = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        super().__init__(message or f"retry after {self.delay:g}s")


class RunFailed(StackShiftError):
    """A run ended as failed; `error` holds its recorded error, if any. `final` is True
    when a handler gets it from `ctx.step.invoke` for a failed child: uncaught, it fails
    the parent without retries (the child's failure is stored; a retry would re-raise it)."""

    def __init__(
        self,
        message: str,
        *,
        run_id: str = "",
        error: dict[str, Any] | None = None,
        final: bool = False,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.error = error or {}
        self.final = final


class RunCancelled(StackShiftError):
    """A run ended as cancelled."""

    def __init__(self, message: str = "run cancelled", *, run_id: str = "") -> None:
        super().__init__(message)
        self.run_id = run_id


class UnknownJobError(StackShiftError, LookupError):
    """The job is not registered here and no queue is known for it."""


class PayloadError(StackShiftError, ValueError):
    """A value does not serialize with the app's serializer, or is too large. `path` is
    where the offending value sits (`['amount']`), when known."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"value at {path}: {message}" if path else message)
        self.reason = message
        self.path = path

    def at(self, where: str) -> PayloadError:
        """The same error told from the caller's side: `payload['amount']: ...`."""
        if self.path:
            return PayloadError(f"{where}{self.path}: {self.reason}")
        return PayloadError(f"{where}: {self.reason}")


class InvalidArgumentError(StackShiftError, ValueError):
    """A bad name, duration or option was passed."""


class RunNotFoundError(StackShiftError, LookupError):
    """No run with that id exists (it was never started, or it expired after retention)."""


class ScheduleNotFoundError(StackShiftError, LookupError):
    """No schedule of that name (`schedules.trigger`)."""


class InvalidRunStateError(StackShiftError):
    """The run's status does not allow the operation (for example retrying a completed run)."""


class RunDataError(StackShiftError):
    """A run's stored record is damaged: a field is missing or does not decode."""


class LockError(StackShiftError):
    """A lock was not acquired within its wait, or was lost while held."""


class LeaseLostError(StackShiftError):
    """This worker no longer holds the run: another worker recovered it."""


class TransactionConflictError(StackShiftError):
    """A transactional step (`ctx.step.transact`) found a key it read changed at every
    commit, `max_conflicts` times in a row: the step fails with nothing written."""


class RedisUnavailableError(StackShiftError, RedisConnectionError):
    """Redis could not be reached (refused, timed out, unknown host); the message names
    the cause. The original redis-py error is its `__cause__`."""


class LayoutError(StackShiftError):
    """The namespace's storage layout was written by a newer release than this one: this
    process refuses to write to it (a rollback must not corrupt data)."""


class ResultTimeout(StackShiftError, TimeoutError):
    """`RunHandle.result()` did not see the run finish in time."""


class StaleDefinitionsError(StackShiftError):
    """Internal: a script refused a start made from outdated job definitions (the caller
    reloads them and sends again; never seen by users)."""


_CODES: dict[str, type[StackShiftError]] = {
    "STALE": StaleDefinitionsError,
    "LEASE_LOST": LeaseLostError,
    "NOT_FOUND": RunNotFoundError,
    "BAD_STATE": InvalidRunStateError,
    "CANCELLED": RunCancelled,
    "NOT_INTEGER": InvalidArgumentError,
    "INVALID": InvalidArgumentError,
}


def from_redis_error(exc: Exception) -> Exception:
    """Map a `CODE detail` error reply from a script to our exception, else return it."""
    text = str(exc).split(" script: ", 1)[0]  # drop redis's "script: <sha>, on @user_script…"
    code, _, detail = text.partition(" ")
    cls = _CODES.get(code)
    return cls(detail or code) if cls else exc
