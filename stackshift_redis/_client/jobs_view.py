"""`stackshift jobs`: each job's published definition, live versions (and the workers that
serve them) and unfinished runs per version, so operators know when old code can go.

A view costs when it is read: it reads the definitions hash, each job's versions set, the
workers' info, and per unfinished status index of a job the `ver` and `unsv` fields of its
runs (pipelined; at most `MAX_RUNS` per job and status, beyond which `capped` is set), on
every partition.
Nothing is written for it on the run path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .._core.fanout import each
from .._core.namespace import Namespace

UNFINISHED = ("queued", "scheduled", "running", "waiting")
MAX_RUNS = 10_000


@dataclass
class JobReport:
    """One job as `stackshift jobs` shows it."""

    job: str
    queue: str
    versions: list[int]  # versions the last publishing worker registered
    live: dict[int, list[str]]  # live version -> ids of live workers that register it
    unfinished: dict[int, dict[str, int]] = field(default_factory=dict)  # version -> status -> n
    unserved: dict[int, int] = field(default_factory=dict)  # version -> runs held for it
    capped: bool = False  # more runs than MAX_RUNS in one status: counts are lower bounds


async def jobs_report(ns: Namespace) -> list[JobReport]:
    """Every published job (see the module docstring)."""
    r, k = ns.redis, ns.keys
    raw = await r.hgetall(k.defs())
    defs = {
        key.decode(): json.loads(v)
        for key, v in raw.items()
        if b"|" not in key and not key.startswith(b"#")
    }
    secs, micros = await r.time()
    now = secs * 1000 + micros // 1000
    workers = await r.zrangebyscore(k.workers(), now, "+inf")
    infos = await r.hmget(k.worker_info(), workers) if workers else []
    serving: dict[tuple[str, int], list[str]] = {}
    for wid, info in zip(workers, infos, strict=True):
        for job, versions in (json.loads(info) if info else {}).get("versions", {}).items():
            for v in versions:
                serving.setdefault((job, int(v)), []).append(wid.decode())
    out: list[JobReport] = []
    for job in sorted(defs):
        d = defs[job]
        live = await r.zrangebyscore(k.job_versions(job), now, "+inf")
        report = JobReport(
            job=job,
            queue=str(d.get("queue", "")),
            versions=[int(v) for v in d.get("versions", [1])],
            live={int(v): sorted(serving.get((job, int(v)), [])) for v in sorted(live, key=int)},
        )
        await _count(ns, report)
        out.append(report)
    return out


async def _count(ns: Namespace, report: JobReport) -> None:
    r = ns.redis
    for status in UNFINISHED:
        ids = await _ids(ns, report.job, status)
        report.capped |= len(ids) >= MAX_RUNS
        if not ids:
            continue
        async with r.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.hmget(ns.keys_of(rid).run(rid), "ver", "unsv", "job")
            fields: list[Any] = await pipe.execute()
        for ver, unsv, job in fields:
            if job is None or job.decode() != report.job:  # (running: every job's leases)
                continue
            v = int(ver or 1)
            per = report.unfinished.setdefault(v, {})
            per[status] = per.get(status, 0) + 1
            if unsv is not None:
                report.unserved[v] = report.unserved.get(v, 0) + 1


async def _ids(ns: Namespace, job: str, status: str) -> list[str]:
    """Up to MAX_RUNS run ids of `job` in `status`, those of each partition in turn."""
    found = await each(ns, lambda p: _part_ids(ns, p, job, status))
    return [i for ids in found for i in ids][:MAX_RUNS]


async def _part_ids(ns: Namespace, part: int, job: str, status: str) -> list[str]:
    """Up to MAX_RUNS run ids of `job` in `status` on partition `part`: queued ones from
    the id-ordered index, running ones from the leases of every queue that leased runs
    (they have no index: any job's, filtered by the caller), the others from the job's
    time index."""
    r, k = ns.redis, ns.part_keys[part]
    if status == "running":
        queues = sorted(q.decode() for q in await r.smembers(k.leased_queues()))
        ids: list[str] = []
        for q in queues:
            ids += [i.decode() for i in await r.zrange(k.leases(q), 0, MAX_RUNS - 1)]
        return ids[:MAX_RUNS]
    index = k.ord_job_status(job, status) if status == "queued" else k.idx_job_status(job, status)
    return [i.decode() for i in await r.zrange(index, 0, MAX_RUNS - 1)]
