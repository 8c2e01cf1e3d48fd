"""Read-only inspection of a namespace, served from the run hashes and status indexes."""

from __future__ import annotations

from typing import Any

from .core import Namespace
from .errors import InvalidArgumentError, RunDataError
from .keys import STATUSES, check_name
from .records import RunInfo, check_int, check_run_id, parse_run
from .scripts import redis_call


@redis_call
async def get_run(ns: Namespace, run_id: str) -> RunInfo | None:
    """The run's RunInfo, or None when unknown or expired."""
    h = await ns.redis.hgetall(ns.keys.run(check_run_id(run_id)))
    return _parse(run_id, h, ns) if h else None


def _parse(run_id: str, h: dict[bytes, bytes], ns: Namespace) -> RunInfo:
    try:
        return parse_run(run_id, h, ns.serializer)
    except Exception as exc:
        why = f"{exc}" if isinstance(exc, ValueError) else f"{exc!r}"
        raise RunDataError(f"run {run_id}: its stored record is damaged ({why})") from exc


@redis_call
async def run_status(ns: Namespace, run_id: str) -> str | None:
    """The run's status, or None when unknown or expired."""
    value = await ns.redis.hget(ns.keys.run(run_id), "status")
    return None if value is None else str(value.decode())


@redis_call
async def list_runs(
    ns: Namespace, status: str | None = None, job: str | None = None, limit: int = 50
) -> list[RunInfo]:
    """Runs from the status indexes, most recently changed first."""
    if status is not None and status not in STATUSES:
        raise InvalidArgumentError(f"unknown status {status!r}")
    if job is not None:
        check_name("job", job)
    check_int(limit, "limit", 1, 10_000)
    statuses = [status] if status else list(STATUSES)
    k = ns.keys
    idx = [k.idx_job_status(job, s) if job else k.idx_status(s) for s in statuses]
    async with ns.redis.pipeline(transaction=False) as pipe:
        for key in idx:
            pipe.zrevrange(key, 0, limit - 1, withscores=True)
        ranges: list[Any] = await pipe.execute()
    scored = sorted((pair for r in ranges for pair in r), key=lambda p: p[1], reverse=True)
    ids = [m.decode() for m, _ in scored[:limit]]
    async with ns.redis.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hgetall(k.run(run_id))
        hashes = await pipe.execute()
    return [_parse(i, h, ns) for i, h in zip(ids, hashes, strict=True) if h]
