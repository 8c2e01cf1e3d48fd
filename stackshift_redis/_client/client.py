"""The client surface of a namespace: start runs, inspect and control them, send events,
use state. `StackShift` is a `Client` plus the job registry and workers; the sync facade
drives a `Client` of its own on its loop thread."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._core.namespace import Namespace
from .._core.records import Duration, RunInfo, RunPage, SendEventResult, check_run_id
from ..errors import InvalidArgumentError, RunNotFoundError
from .control import Control, Statuses
from .events import EventBus
from .handles import ResultWaiter, RunHandle
from .reads import find_run, get_run, list_runs
from .starting import Starter, StartOptions
from .state import State


class Client:
    """Start, inspect and control runs; send events; durable state. Connects lazily."""

    def __init__(self, ns: Namespace) -> None:
        self._core = ns
        self._waiter = ResultWaiter(ns)
        self._starter = Starter(ns)
        self._control = Control(ns)
        self._events = EventBus(ns)
        self.state = State(ns)
        """Durable values of this namespace: set/get/incr/mark/lock."""

    async def close(self) -> None:
        """Stop the result reader and close the client this namespace created."""
        await self._waiter.close()
        await self._core.aclose()

    # starting runs
    async def start(
        self,
        job: str,
        payload: Any = None,
        *,
        queue_name: str | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        version: int | None = None,
        partition_key: str | None = None,
    ) -> RunHandle:
        """Start a run of `job`; with an idempotency key, duplicates return the same run.
        `priority` (-100..100, default: the job's) orders ready runs: higher first. Under
        the job's flow control the start may be skipped (`RunHandle.skipped`). The job's
        rules are the ones its workers published (else this process's definition).
        `version` pins the run to that job version (default: the highest live one).
        `partition_key`: with partitions, runs of one key share a partition."""
        keys = None if idempotency_key is None else [idempotency_key]
        options = StartOptions(
            queue_name=queue_name,
            idempotency_keys=keys,
            idempotency_ttl=idempotency_ttl,
            delay=delay,
            run_at=run_at,
            priority=priority,
            version=version,
            partition_key=partition_key,
        )
        return (await self._start(job, [payload], options))[0]

    async def start_many(
        self,
        job: str,
        payloads: Sequence[Any],
        *,
        queue_name: str | None = None,
        idempotency_keys: Sequence[str] | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        version: int | None = None,
        partition_key: str | None = None,
    ) -> list[RunHandle]:
        """Start many runs of `job` in few round trips; same rules per run as `start`."""
        options = StartOptions(
            queue_name=queue_name,
            idempotency_keys=idempotency_keys,
            idempotency_ttl=idempotency_ttl,
            delay=delay,
            run_at=run_at,
            priority=priority,
            version=version,
            partition_key=partition_key,
        )
        return await self._start(job, payloads, options)

    async def _start(
        self, job: str, payloads: Sequence[Any], options: StartOptions
    ) -> list[RunHandle]:
        """start and start_many, and their sync twins: runs of `job` under `options`."""
        started = await self._starter.start_many(job, payloads, options)
        return [
            RunHandle(self._core, self._waiter, run_id, dedup, skipped)
            for run_id, dedup, skipped in started
        ]

    # inspect and control
    def run(self, run_id: str, deduplicated: bool = False) -> RunHandle:
        """A handle for an existing run id."""
        return RunHandle(self._core, self._waiter, check_run_id(run_id), deduplicated)

    async def get_run(self, run_id: str) -> RunInfo | None:
        """The run's RunInfo, or None when unknown or expired."""
        return await get_run(self._core, run_id)

    async def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Cancel a run. A queued, scheduled or waiting run ends at once; a running run
        stops at its next step (handlers can check `ctx.cancelled` between steps). The
        reason is in `RunCancelled` and in `info.error["message"]`. True when this call
        cancelled (or flagged) the run; False when it was already final."""
        check_run_id(run_id)
        if not isinstance(reason, str):
            raise InvalidArgumentError(f"reason must be a str, not {reason!r}")
        reply = await self._core.scripts_of(run_id).cancel(
            run_id, reason, self._core.settings.retention_ms
        )
        return reply is not None and reply[1]

    async def retry(self, run_id: str) -> RunHandle:
        """Queue a failed (or cancelled) run again; its completed steps are reused.
        RunNotFoundError when there is no such run, InvalidRunStateError when it is
        neither failed nor cancelled."""
        if not await self._core.scripts_of(check_run_id(run_id)).retry(run_id):
            raise RunNotFoundError(f"no run {run_id}")
        return self.run(run_id)

    async def list_runs(
        self,
        status: str | Sequence[str] | None = None,
        job: str | None = None,
        limit: int = 50,
        *,
        cursor: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> RunPage:
        """A page of runs, newest first: a list of RunInfo whose `.cursor` fetches the next
        page (None on the last). `status` is one status or a list; the creation range is
        [created_after, created_before). Stable while runs change status; a page may hold
        fewer than `limit` runs (runs that left the status or expired since the index read)."""
        return await list_runs(
            self._core, status, job, limit, cursor, created_after, created_before
        )

    async def find_run(self, job: str, idempotency_key: str) -> RunInfo | None:
        """The run that an idempotency key of `job` points to, or None."""
        return await find_run(self._core, job, idempotency_key)

    # lifecycle and bulk control (control.py)
    async def cancel_runs(
        self,
        *,
        job: str | None = None,
        status: Statuses = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        reason: str = "cancelled",
    ) -> int:
        """Cancel matching runs (status: one or a list; default every unfinished one) in
        bounded batches; the number cancelled (running ones: flagged, they stop at their
        next step). Safe to call again."""
        return await self._control.cancel_runs(
            job=job,
            status=status,
            created_after=created_after,
            created_before=created_before,
            reason=reason,
        )

    async def retry_runs(
        self,
        *,
        job: str | None = None,
        status: Statuses = "failed",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> int:
        """Queue matching failed (or cancelled) runs again in bounded batches; the count.
        Completed steps are reused. Safe to call again."""
        return await self._control.retry_runs(
            job=job, status=status, created_after=created_after, created_before=created_before
        )

    async def replay(self, run_id: str, from_step: str | None = None) -> RunHandle:
        """A new run of the run's job and payload (`info.replay_of` links it). With
        `from_step`, the step results recorded before that step are reused."""
        return self.run(await self._control.replay(run_id, from_step))

    async def pause_queue(self, name: str) -> bool:
        """Pause a queue: it accepts runs, workers claim none. False if paused already."""
        return await self._control.pause_queue(name)

    async def resume_queue(self, name: str) -> bool:
        """Resume a paused queue; its runs are taken in order. False if it was not paused."""
        return await self._control.resume_queue(name)

    async def send_event(
        self, name: str, data: Any = None, *, id: str | None = None
    ) -> SendEventResult:
        """Record an event: resume runs waiting for it and start its on_event jobs."""
        return await self._events.send(name, data, event_id=id)
