"""Read-only inspection of runs, served from the run hashes and the status indexes.

Paging: `list_runs` pages the creation-ordered indexes `K.ord(status)` and
`K.ordj(job, status)` (all scores 0, so a ZSET is ordered by run id, and run ids start
with their creation time in ms as 11 hex digits); running runs have no index (layout 4)
and are read from their queues' leases, in the same id order. A cursor is the last run id
of a page; the next page is the ids below it. A run keeps its place in that order whatever
its status becomes, so paging never returns a run twice and never skips a run that kept a
matching status throughout, while runs move between statuses. The ids of one page are
read by one script per partition (lua/list_runs.lua, one slot: the partition's hash tag),
so a run moving between two of the requested statuses during the read is seen exactly once
(a run never changes partition).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from .._core.fanout import each
from .._core.keys import STATUSES, check_name
from .._core.namespace import Namespace
from .._core.records import (
    RunInfo,
    RunPage,
    RunStatus,
    check_int,
    check_run_id,
    epoch_ms,
    parse_run,
)
from .._core.routing import idempotency_partition
from .._core.scripts import redis_call
from ..errors import InvalidArgumentError, RunDataError

MAX_PAGE = 10_000
_CURSOR_RE = re.compile(r"^[0-9a-f]{11,64}(-[0-9]{1,3})?$")  # a run id (its partition)


@redis_call
async def get_run(ns: Namespace, run_id: str) -> RunInfo | None:
    """The run's RunInfo, or None when unknown or expired."""
    h = await ns.redis.hgetall(ns.keys_of(check_run_id(run_id)).run(run_id))
    return _parse(run_id, h, ns) if h else None


def _parse(run_id: str, h: dict[bytes, bytes], ns: Namespace) -> RunInfo:
    try:
        return parse_run(run_id, h, ns.serializer)
    except Exception as exc:
        why = f"{exc}" if isinstance(exc, ValueError) else f"{exc!r}"
        raise RunDataError(f"run {run_id}: its stored record is damaged ({why})") from exc


def _listed(run_id: str, h: dict[bytes, bytes], ns: Namespace, status: str) -> RunInfo:
    """A listed run: a damaged record comes back with its `damaged` fields left empty, so
    one bad run does not fail a page."""
    try:
        return parse_run(run_id, h, ns.serializer, status=status)
    except Exception as exc:  # not even the fields that can be read: its id and status
        return RunInfo(
            id=run_id,
            status=RunStatus(status),
            job="",
            queue="",
            payload=None,
            result=None,
            error=None,
            attempts=0,
            created_at=None,
            started_at=None,
            finished_at=None,
            steps={},
            timeline=[],
            damaged=f"the record does not decode ({exc!r})",
        )


@redis_call
async def run_status(ns: Namespace, run_id: str) -> str | None:
    """The run's status, or None when unknown or expired."""
    value = await ns.redis.hget(ns.keys_of(run_id).run(run_id), "status")
    return None if value is None else str(value.decode())


def check_statuses(status: str | Sequence[str] | None) -> list[str]:
    """The statuses a filter names (all of them for None); unknown ones are refused."""
    if status is None:
        return list(STATUSES)
    names = [status] if isinstance(status, str) else list(status)
    if not names:
        raise InvalidArgumentError("status must name at least one status")
    for s in names:
        if s not in STATUSES:
            raise InvalidArgumentError(f"unknown status {s!r}: use one of {', '.join(STATUSES)}")
    return list(dict.fromkeys(names))


def _bound(when: datetime | None, what: str) -> str | None:
    if when is None:
        return None
    if not isinstance(when, datetime):
        raise InvalidArgumentError(f"{what} must be a datetime, not {when!r}")
    return f"{max(epoch_ms(when), 0):011x}"


def page_bounds(
    cursor: str | None, created_after: datetime | None, created_before: datetime | None
) -> tuple[str, str]:
    """ZREVRANGEBYLEX bounds (max, min) for ids below `cursor`, created in the range
    [created_after, created_before) (by the creation time in the run id)."""
    if cursor is not None and (not isinstance(cursor, str) or not _CURSOR_RE.match(cursor)):
        raise InvalidArgumentError(f"invalid cursor {cursor!r}: pass a page's .cursor back")
    after = _bound(created_after, "created_after")
    before = _bound(created_before, "created_before")
    if after is not None and before is not None and after > before:
        raise InvalidArgumentError("created_after is later than created_before")
    upper = [b for b in (cursor, before) if b is not None]
    high = "(" + min(upper) if upper else "+"
    low = "[" + after if after is not None else "-"
    return high, low


@redis_call
async def list_runs(
    ns: Namespace,
    status: str | Sequence[str] | None = None,
    job: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> RunPage:
    """A page of runs, newest first (by creation), and the cursor of the next page.

    Cost: one script call per partition (lua/list_runs.lua: one ZREVRANGEBYLEX per
    status, LIMIT limit+1; running runs from the queues' leases, bounded by the workers'
    concurrency), then one pipeline of `limit` HGETALLs: bounded whatever the number of
    runs retained. With partitions, each pages from the same cursor (run ids sort by
    creation time across partitions) and their ids are merged, newest first.
    """
    statuses = check_statuses(status)
    if job is not None:
        check_name("job", job)
    check_int(limit, "limit", 1, MAX_PAGE)
    high, low = page_bounds(cursor, created_after, created_before)
    pages = await each(
        ns, lambda p: ns.part_scripts(p).list_runs(job or "", statuses, (high, low), limit + 1)
    )
    listed_as = {run_id: s for page in pages for run_id, s in page}
    ids = sorted(listed_as, reverse=True)
    next_cursor = ids[limit - 1] if len(ids) > limit else None
    ids = ids[:limit]
    async with ns.redis.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hgetall(ns.keys_of(run_id).run(run_id))
        hashes = await pipe.execute()
    runs = [_listed(i, h, ns, listed_as[i]) for i, h in zip(ids, hashes, strict=True) if h]
    if status is not None:  # a run that changed status since the index read is left out
        runs = [r for r in runs if r.status in statuses]
    return RunPage(runs, next_cursor)


@redis_call
async def find_run(ns: Namespace, job: str, idempotency_key: str) -> RunInfo | None:
    """The run an idempotency key of `job` points to (None when unknown or expired)."""
    check_name("job", job)
    if not isinstance(idempotency_key, str) or not idempotency_key:
        raise InvalidArgumentError("idempotency_key must be a non-empty string")
    run_id = await idem_lookup(ns, job, idempotency_key)
    if run_id is None:
        return None
    info = await get_run(ns, run_id)
    return info if info is not None and info.job == job else None


async def idem_lookup(ns: Namespace, job: str, key: str) -> str | None:
    """The run id an idempotency key of `job` holds. Keys are kept per partition: the
    key's own partition (routing.idempotency_partition) is read first (one GET: all
    there is with one partition), then every other one in one pipeline, since a run
    started with a partition_key or a flow-control key lives on that key's partition
    instead; when several hold one (the key came with different partition keys), the
    newest run."""
    home = idempotency_partition(job, key, ns.partitions) if ns.partitions > 1 else 0
    found = await ns.redis.get(ns.part_keys[home].idem(job, key))
    if found is None and ns.partitions > 1:
        async with ns.redis.pipeline(transaction=False) as pipe:
            for p, keys in enumerate(ns.part_keys):
                if p != home:
                    pipe.get(keys.idem(job, key))
            found = max((i for i in await pipe.execute() if i is not None), default=None)
    return None if found is None else str(found.decode())
