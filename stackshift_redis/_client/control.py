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

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from .._core.keys import UNTIMED, check_name
from .._core.namespace import Namespace
from .._core.records import check_run_id, epoch_ms
from .._core.scripts import BulkRequest
from ..errors import InvalidArgumentError, RunNotFoundError
from .reads import check_statuses, page_bounds

BATCH = 200  # index entries examined per script call, at most
BUDGET_US = 2000  # server time a batch may use before it stops (a run's work finishes)
CANCELLABLE = ("queued", "scheduled", "waiting", "running")
RETRIABLE = ("failed", "cancelled")
Statuses = str | Sequence[str] | None
_CURSOR = re.compile(r"^\d{1,4}\|[0-9.e+-]{0,32}\|[0-9a-f]{0,64}\|\d{0,16}$")
Progress = Callable[[int], None] | None  # called after each batch with the count so far


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


def _action_statuses(action: str, status: Statuses, op: str) -> list[str]:
    """The statuses a bulk `action` ('cancel' | 'retry') acts on: the given ones, each
    allowed for it, else its default (every cancellable status; failed runs for retry)."""
    if action not in ("cancel", "retry"):
        raise InvalidArgumentError(f"{op}: action must be cancel or retry: {action!r}")
    allowed = CANCELLABLE if action == "cancel" else RETRIABLE
    default = None if action == "cancel" else "failed"
    return _statuses(f"{action}_runs", status if status else default, allowed)


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
        progress: Progress = None,
    ) -> int:
        """Cancel the matching runs (default: every unfinished status); the count."""
        statuses = _statuses("cancel_runs", status, CANCELLABLE)
        if not isinstance(reason, str):
            raise InvalidArgumentError("cancel_runs: reason must be a str")
        return await self._bulk(
            "cancel", job, statuses, _range(created_after, created_before), reason, progress
        )

    async def retry_runs(
        self,
        *,
        job: str | None = None,
        status: Statuses = "failed",
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        progress: Progress = None,
    ) -> int:
        """Queue the matching failed (or cancelled) runs again; the count."""
        statuses = _statuses("retry_runs", status, RETRIABLE)
        created = _range(created_after, created_before)
        return await self._bulk("retry", job, statuses, created, "", progress)

    async def count_runs(
        self,
        action: str,
        *,
        job: str | None = None,
        status: Statuses = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> int:
        """How many runs `action` ('cancel' | 'retry') would change now with these filters
        (a dry run; its default statuses). Cost: one ZLEXCOUNT per status on the
        creation-ordered index (O(log n)), in one pipeline."""
        statuses = _action_statuses(action, status, "count_runs")
        _range(created_after, created_before)
        if job is not None:
            check_name("job", job)
        high, low = page_bounds(None, created_after, created_before)
        k = self._ns.keys
        running = await self._count_running(job, low, high) if "running" in statuses else 0
        async with self._ns.redis.pipeline(transaction=False) as pipe:
            for s in statuses:
                if s != "running":
                    pipe.zlexcount(k.ord_job_status(job, s) if job else k.ord_status(s), low, high)
            return running + sum(int(n) for n in await pipe.execute())

    async def _count_running(self, job: str | None, low: str, high: str) -> int:
        """Running runs have no index: the leases of every queue that leased runs (as many
        as the workers' concurrency), filtered by id range and, with `job`, one HMGET."""
        ns, k = self._ns, self._ns.keys
        queues = sorted(q.decode() for q in await ns.redis.smembers(k.leased_queues()))
        async with ns.redis.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.zrange(k.leases(q), 0, -1)
            ids = [i.decode() for leased in await pipe.execute() for i in leased]
        ids = [i for i in ids if _in_range(i, low, high)]
        if job is None or not ids:
            return len(ids)
        async with ns.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(k.run(i), "job")
            return sum(1 for j in await pipe.execute() if j is not None and j.decode() == job)

    async def _walks(self, job: str | None, statuses: list[str]) -> list[tuple[str, str, str]]:
        """(status, index, its order) per index a bulk pass walks: running runs in the leases
        of every queue that leased runs, queued ones in the id-ordered index, others by time."""
        ns, k = self._ns, self._ns.keys
        walks: list[tuple[str, str, str]] = []
        for status in statuses:
            if status == "running":
                queues = sorted(q.decode() for q in await ns.redis.smembers(k.leased_queues()))
                walks += [(status, k.leases(q), "lease") for q in queues]
            elif status in UNTIMED:
                index = k.ord_job_status(job, status) if job else k.ord_status(status)
                walks.append((status, index, "id"))
            else:
                index = k.idx_job_status(job, status) if job else k.idx_status(status)
                walks.append((status, index, "time"))
        return walks

    async def bulk_part(
        self,
        action: str,
        *,
        job: str | None = None,
        status: Statuses = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        reason: str = "cancelled",
        cursor: str | None = None,
        seconds: float = 1.0,
    ) -> tuple[int, str | None]:
        """Part of a bulk cancel or retry (the dashboard's progress): batches for about
        `seconds`, from `cursor` (None: the start); (runs changed, the cursor to go on
        from, or None when the pass is over)."""
        statuses = _action_statuses(action, status, "bulk")
        created = _range(created_after, created_before)
        return await self._bulk_part(
            action, job, statuses, created, reason, cursor, time.monotonic() + seconds
        )

    async def _bulk(
        self,
        action: str,
        job: str | None,
        statuses: list[str],
        created: tuple[int, int],
        reason: str,
        progress: Progress = None,
    ) -> int:
        total, _ = await self._bulk_part(
            action, job, statuses, created, reason, None, None, progress
        )
        return total

    async def _bulk_part(
        self,
        action: str,
        job: str | None,
        statuses: list[str],
        created: tuple[int, int],
        reason: str,
        cursor: str | None,
        deadline: float | None,
        progress: Progress = None,
    ) -> tuple[int, str | None]:
        ns = self._ns
        if job is not None:
            check_name("job", job)
        first, position, upto = 0, ("", ""), ""
        if cursor is not None:  # "<walk number>|<score>|<run id>|<upto>"
            if not _CURSOR.match(cursor):
                raise InvalidArgumentError(f"bulk: invalid cursor {cursor!r}")
            n, score, run_id, upto = cursor.split("|")
            first, position = int(n), (score, run_id)
        walks = await self._walks(job, statuses)
        total = 0
        for i in range(first, len(walks)):
            status, index, order = walks[i]
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
                if progress is not None:
                    progress(total)
                if nxt is None:
                    break
                position = nxt
                if deadline is not None and time.monotonic() > deadline:
                    return total, f"{i}|{position[0]}|{position[1]}|{upto}"
            position = ("", "")
        return total, None

    async def replay(self, run_id: str, from_step: str | None = None) -> str:
        """Start a new run of the run's job and payload; the new run's id."""
        check_run_id(run_id)
        if from_step is not None and (not isinstance(from_step, str) or not from_step):
            raise InvalidArgumentError(f"replay: from_step must be a step name: {from_step!r}")
        ns = self._ns
        job, queue = await ns.redis.hmget(ns.keys_of(run_id).run(run_id), "job", "queue")
        if job is None:
            raise RunNotFoundError(f"no run {run_id}")
        fields: dict[str, str] = {}
        if ns.hooks:
            started = ns.hooks.start_fields(job.decode(), (queue or b"").decode())
            fields = {f"x:{name}": value for name, value in started.items()}
        new_id = ns.new_run_id(ns.part_of(run_id))
        await ns.scripts_of(run_id).replay(run_id, new_id, from_step or "", fields)
        return new_id

    async def pause_queue(self, name: str) -> bool:
        """Pause a queue: workers claim none of its runs until resumed. False if paused.
        With P > 1 every partition's copy of the queue's settings is paused first (take.lua
        reads `paused` there), then the namespace-wide one (which operators read)."""
        queue, ns = check_name("queue", name), self._ns
        if ns.partitions > 1:
            await asyncio.gather(
                *(ns.part_scripts(p).pause_queue(queue) for p in range(ns.partitions))
            )
        return await ns.scripts.pause_queue(queue)

    async def resume_queue(self, name: str) -> bool:
        """Resume a paused queue and wake its workers. False if it was not paused.
        With P > 1 every partition is resumed (and its workers woken), then the namespace."""
        queue, ns = check_name("queue", name), self._ns
        if ns.partitions > 1:
            await asyncio.gather(
                *(ns.part_scripts(p).resume_queue(queue) for p in range(ns.partitions))
            )
        return await ns.scripts.resume_queue(queue)


def _in_range(run_id: str, low: str, high: str) -> bool:
    """Whether `run_id` lies within ZRANGEBYLEX bounds (low, high) as page_bounds gives."""
    if low != "-" and run_id < low[1:]:
        return False
    return high == "+" or run_id < high[1:]
