"""Run lifecycle and bulk control: cancel_runs / retry_runs, replay from a step, pausing
and resuming queues.

Bulk operations are served from the status indexes (`keys.idx_status`,
`keys.idx_job_status`: run ids scored by when they entered that status; queued and running
have only the id-ordered `keys.ord_status` / `keys.ord_job_status`, where a run's creation
time stands for its entry time; running runs are walked in the leases of every queue in
`keys.leased_queues`) in bounded
batches, never one unbounded script and never a SCAN: each batch is one `bulk` script call
that examines at most `BATCH` index entries after a cursor, stops once it has used
`BUDGET_US` of server time, and re-checks every run before it acts, so Redis is never
blocked for more than a few milliseconds and a run that changed status in between is left
alone. The cursor is a position (score, run id), not a rank: the runs a batch changes
leave the index, and other clients change it concurrently. A pass examines only the
entries that were there when it began (`upto`), so it ends while runs keep arriving, and
calling it again is safe: what was done already no longer matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .._core.keys import UNTIMED, check_name
from .._core.namespace import Namespace
from .._core.records import check_run_id, epoch_ms, new_run_id
from .._core.scripts import BulkRequest
from ..errors import InvalidArgumentError, RunNotFoundError
from .reads import check_statuses

BATCH = 200  # index entries examined per script call, at most
BUDGET_US = 2000  # server time a batch may use before it stops (a run's work finishes)
CANCELLABLE = ("queued", "scheduled", "waiting", "running")
RETRIABLE = ("failed", "cancelled")
Statuses = str | Sequence[str] | None


def _statuses(op: str, status: Statuses, allowed: tuple[str, ...]) -> list[str]:
    """The statuses to act on: one or a list, each known (reads.check_statuses) and
    allowed for `op`."""
    if status is None:
        return list(allowed)
    try:
        given = check_statuses(status)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{op}: {exc}") from None
    for s in given:
        if s not in allowed:
            raise InvalidArgumentError(f"{op}: status {s!r} is not one of {', '.join(allowed)}")
    return given


def _range(created_after: datetime | None, created_before: datetime | None) -> tuple[int, int]:
    """(after, before) in epoch ms, -1 where not given; an empty or inverted range fails."""
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and not isinstance(value, datetime):
            raise InvalidArgumentError(f"{name} must be a datetime, not {value!r}")
    after = epoch_ms(created_after) if created_after is not None else -1
    before = epoch_ms(created_before) if created_before is not None else -1
    if after >= 0 and before >= 0 and after >= before:
        raise InvalidArgumentError("created_after must be earlier than created_before")
    return after, before


class Control:
    """Bulk cancel and retry, replay and queue pausing for one namespace."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns

    async def cancel_runs(
        self,
        *,
        job: str | None = None,
        status: Statuses = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        reason: str = "cancelled",
    ) -> int:
        """Cancel the matching runs (default: every unfinished status); the count."""
        statuses = _statuses("cancel_runs", status, CANCELLABLE)
        if not isinstance(reason, str):
            raise InvalidArgumentError("cancel_runs: reason must be a str")
        return await self._bulk(
            "cancel", job, statuses, _range(created_after, created_before), reason
        )

    async def retry_runs(
        self,
        *,
        job: str | None = None,
        status: Statuses = "failed",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> int:
        """Queue the matching failed (or cancelled) runs again; the count."""
        statuses = _statuses("retry_runs", status, RETRIABLE)
        return await self._bulk("retry", job, statuses, _range(created_after, created_before), "")

    async def _bulk(
        self,
        action: str,
        job: str | None,
        statuses: list[str],
        created: tuple[int, int],
        reason: str,
    ) -> int:
        ns, k = self._ns, self._ns.keys
        if job is not None:
            check_name("job", job)
        total, upto = 0, ""
        walks: list[tuple[str, str, str]] = []  # (status, index, its order)
        for status in statuses:
            if status == "running":  # no index: the leases of every queue that leased runs
                queues = sorted(q.decode() for q in await ns.redis.smembers(k.leased_queues()))
                walks += [(status, k.leases(q), "lease") for q in queues]
            elif status in UNTIMED:  # no time index: the id-ordered one
                walks.append(
                    (status, k.ord_job_status(job, status) if job else k.ord_status(status), "id")
                )
            else:
                walks.append(
                    (status, k.idx_job_status(job, status) if job else k.idx_status(status), "time")
                )
        for status, index, order in walks:
            position = ("", "")
            while True:
                request = BulkRequest(
                    index=index,
                    action=action,
                    status=status,
                    job=job or "",
                    created_ms=created,
                    cursor=(*position, upto),
                    limit=BATCH,
                    reason=reason,
                    retention_ms=ns.settings.retention_ms,
                    budget_us=BUDGET_US,
                    order=order,
                )
                changed, nxt, upto = await ns.scripts.bulk(request)
                total += changed
                if nxt is None:
                    break
                position = nxt
        return total

    async def replay(self, run_id: str, from_step: str | None = None) -> str:
        """Start a new run of the run's job and payload; the new run's id."""
        check_run_id(run_id)
        if from_step is not None and (not isinstance(from_step, str) or not from_step):
            raise InvalidArgumentError(f"replay: from_step must be a step name: {from_step!r}")
        ns = self._ns
        job, queue = await ns.redis.hmget(ns.keys.run(run_id), "job", "queue")
        if job is None:
            raise RunNotFoundError(f"no run {run_id}")
        fields: dict[str, str] = {}
        if ns.hooks:
            started = ns.hooks.start_fields(job.decode(), (queue or b"").decode())
            fields = {f"x:{name}": value for name, value in started.items()}
        new_id = new_run_id()
        await ns.scripts.replay(run_id, new_id, from_step or "", fields)
        return new_id

    async def pause_queue(self, name: str) -> bool:
        """Pause a queue: workers claim none of its runs until resumed. False if paused."""
        return await self._ns.scripts.pause_queue(check_name("queue", name))

    async def resume_queue(self, name: str) -> bool:
        """Resume a paused queue and wake its workers. False if it was not paused."""
        return await self._ns.scripts.resume_queue(check_name("queue", name))
