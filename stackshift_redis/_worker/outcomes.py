"""An attempt's outcome, and its one log line once Redis recorded it (or did not)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .._attempt.execution import Execution
from .._core.records import user_traceback
from .._core.scripts import ScriptCall

log = logging.getLogger("stackshift.worker")


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: completed | retry | failed | cancelled | handed_back, and
    after recording also lost (the lease was taken) | unconfirmed (Redis did not confirm)."""

    name: str
    call: ScriptCall | None = None  # the finish script that records it (None: none)
    error: BaseException | None = None  # what ended the attempt, or kept it from the record
    delay_ms: int = 0  # a retry's delay
    intended: str = ""  # lost, unconfirmed: the outcome that was not recorded


def log_outcome(ex: Execution, o: Outcome, handback_limit_ms: int) -> None:
    """One line per outcome: completed and cancelled at INFO, a retry or a lost lease at
    WARNING with the error, a final failure at ERROR with its traceback, a hand-back and
    an outcome Redis did not confirm at ERROR."""
    run, job, extra, exc = ex.run_id, ex.job, ex.log_extra, o.error
    error = f"{type(exc).__name__}: {exc}" if exc is not None else ""
    if o.name == "completed":
        late = "; its cancel came too late (no step after it)" if ex.cancel_requested else ""
        log.info("run %s (%s) completed%s", run, job, late, extra=extra)
    elif o.name == "retry":
        log.warning(
            "run %s (%s) attempt %d failed, retrying in %.3gs: %s",
            run,
            job,
            ex.attempt,
            o.delay_ms / 1000,
            error,
            extra=extra,
        )
    elif o.name == "cancelled":
        log.info("run %s (%s) cancelled: %s", run, job, exc, extra=extra)
    elif o.name == "failed":
        trace = None  # from the user's code, as the stored error's traceback
        if exc is not None and exc.__traceback__ is not None:
            trace = (type(exc), exc, user_traceback(exc.__traceback__))
        log.error("run %s (%s) failed: %s", run, job, error, exc_info=trace, extra=extra)
    elif o.name == "handed_back":
        log.error(
            "run %s: job %r is not registered in this worker (queue %s): handed back for a "
            "worker that has it; it fails if no such worker takes it within %gs",
            run,
            job,
            ex.queue,
            handback_limit_ms / 1000,
            extra=extra,
        )
    elif o.name == "lost":
        before = f" before its outcome ({o.intended}) was recorded" if o.intended else ""
        log.warning(
            "run %s (%s): lease lost to another worker%s; outcome dropped",
            run,
            job,
            before,
            extra=extra,
        )
    else:  # unconfirmed
        log.error(
            "run %s (%s): its outcome (%s) was not recorded, Redis did not confirm it "
            "(%s); the run is taken again once its lease expires",
            run,
            job,
            o.intended,
            error,
            extra=extra,
        )
