"""Read-only inspection of a namespace for operators: queues, workers, runs, events.

The `stackshift` CLI and the dashboard read through `Inspector` only. Every read is served
from indexes with bounded commands (no KEYS, no SCAN): queue structures (ready sets,
leases, delays, settings), the per-job status indexes, the workers' heartbeat ZSET and
info HASH, the event-name ZSET and the event logs. Costs are in each method's docstring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._core.keys import STATUSES
from .._core.namespace import Namespace
from .._core.records import Event, RunInfo, RunPage, from_ms
from .reads import find_run, get_run, list_runs
from .views import RunView, run_view
from .views import jsonable as jsonable
from .views import waterfall as waterfall

MAX_GROUPS = 64  # ready groups counted per queue (more: the count is a lower bound)
# Per-queue counters the scripts may keep in K.qstat (metrics): when present they replace
# the counts computed from ready sets and per-job indexes (exact per queue, O(1)).
COUNTERS = ("ready", "scheduled", "waiting", "unserved")
MAX_WORKERS = 500
MAX_EVENT_NAMES = 50
MAX_WAITERS = 200


@dataclass(frozen=True)
class QueueStats:
    """One queue: ready (queued), scheduled, running (leased), waiting runs; paused, the
    concurrency limit, and runs completed/failed in the last minute and hour; `unserved`:
    queued runs held for a job version no live worker registers (not in `ready`)."""

    name: str
    ready: int
    scheduled: int
    running: int
    waiting: int
    paused: bool
    concurrency: int | None
    completed_1m: int
    failed_1m: int
    completed_1h: int
    failed_1h: int
    delayed: int  # entries due later: delayed starts, retries, sleep and wait timers
    ready_exact: bool = True  # False when more than MAX_GROUPS groups had ready runs
    jobs: list[str] = field(default_factory=list)
    unserved: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    """A worker from its heartbeat: id (`host-pid-rand`), host, pid, queues, running."""

    id: str
    host: str
    pid: int | None
    alive: bool
    last_heartbeat: datetime | None
    heartbeat_age: float | None  # seconds since the last heartbeat
    queues: list[str]
    concurrency: int | None
    running: int | None
    started_at: datetime | None


@dataclass(frozen=True)
class Waiter:
    """One pending wait of a waiting run: an event (name, match), a child run, a timer. A
    run parked on several waits (asyncio.gather) has one Waiter per wait."""

    run_id: str
    job: str
    step: str
    kind: str  # "event" | "sleep" | "child"
    event: str | None
    match_on: list[str]  # the event data paths the wait matches (their values are hashed)
    child: str | None
    since: datetime | None
    due: datetime | None = None  # a sleep's end, or the wait's timeout


@dataclass(frozen=True)
class Overview:
    """The overview page: queues, workers and run counts per status."""

    queues: list[QueueStats]
    workers: list[WorkerInfo]
    totals: dict[str, int]
    now: datetime | None


def _txt(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _ready_groups(row: dict[str, Any]) -> list[str]:
    """The ready groups whose sets are counted (none when a counter says it)."""
    if row["counters"].get("ready") is not None:
        return []
    groups: list[str] = row["groups"][:MAX_GROUPS]
    return groups


def worker_parts(worker_id: str) -> tuple[str, int | None]:
    """Host and pid from a worker id `host-pid-rand` (the host may contain dashes)."""
    parts = worker_id.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return worker_id, None


class Inspector:
    """Read-only views of one namespace (the CLI and the dashboard use this)."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns

    async def server_ms(self) -> int:
        """The Redis server clock in ms (scores are server time)."""
        secs, micros = await self.ns.redis.time()
        return int(secs) * 1000 + int(micros) // 1000

    async def queue_names(self, workers: list[WorkerInfo] | None = None) -> dict[str, list[str]]:
        """Queue -> its jobs: the job map workers publish, plus live workers' queues.
        Cost: HGETALL jobs, ZRANGE + HMGET of worker info (bounded)."""
        by_queue: dict[str, list[str]] = {}
        for job, queue in (await self.ns.redis.hgetall(self.ns.keys.jobs())).items():
            by_queue.setdefault(_txt(queue), []).append(_txt(job))
        for w in workers if workers is not None else await self.workers():
            for q in w.queues if w.alive else []:
                by_queue.setdefault(q, [])
        return {q: sorted(jobs) for q, jobs in sorted(by_queue.items())}

    async def queues(self, workers: list[WorkerInfo] | None = None) -> list[QueueStats]:
        """Stats of every known queue. Cost: two pipelines: per queue ZCARD leases and
        delayed, HGETALL conf, ZRANGE ring (64 groups), HMGET of the counters; per job 2
        ZCARD + 4 ZCOUNT on the per-job status indexes; then one ZCARD per ready group
        (<= 64 per queue, none when a `ready` counter exists). Without counters, per-queue
        waiting/scheduled counts sum the per-job indexes of the queue's jobs (exact unless a
        job's runs are started on several queues); finished counts always do."""
        names = await self.queue_names(workers)
        if not names:
            return []
        r, k = self.ns.redis, self.ns.keys
        now = await self.server_ms()
        async with r.pipeline(transaction=False) as pipe:
            for q, jobs in names.items():
                pipe.zcard(k.leases(q))
                pipe.zcard(k.delayed(q))
                pipe.hgetall(k.queue_conf(q))
                pipe.zrange(k.ring(q), 0, MAX_GROUPS)
                pipe.hmget(k.queue_stat(q), list(COUNTERS))
                for j in jobs:
                    pipe.zcard(k.idx_job_status(j, "waiting"))
                    pipe.zcard(k.idx_job_status(j, "scheduled"))
                    for s in ("completed", "failed"):
                        pipe.zcount(k.idx_job_status(j, s), now - 60_000, "+inf")
                        pipe.zcount(k.idx_job_status(j, s), now - 3_600_000, "+inf")
            replies = iter(await pipe.execute())
        rows: list[dict[str, Any]] = []
        for q, jobs in names.items():
            leased, delayed, conf, groups, counters = (next(replies) for _ in range(5))
            sums = [0] * 6
            for _ in jobs:
                for i in range(6):
                    sums[i] += int(next(replies))
            rows.append(
                {
                    "q": q,
                    "jobs": jobs,
                    "leased": leased,
                    "delayed": delayed,
                    "conf": conf,
                    "groups": [_txt(g) for g in groups],
                    "sums": sums,
                    "counters": dict(zip(COUNTERS, counters, strict=True)),
                }
            )
        async with r.pipeline(transaction=False) as pipe:
            for row in rows:
                for g in _ready_groups(row):
                    pipe.zcard(k.ready(row["q"], g))
            cards = iter(await pipe.execute())
        out = []
        for row in rows:
            conf = {_txt(a): _txt(b) for a, b in row["conf"].items()}
            counted = {c: int(v) for c, v in row["counters"].items() if v is not None}
            ready = sum(int(next(cards)) for _ in _ready_groups(row))
            ready = counted.get("ready", ready)
            s = row["sums"]
            s[0], s[1] = counted.get("waiting", s[0]), counted.get("scheduled", s[1])
            limit = conf.get("concurrency")
            out.append(
                QueueStats(
                    name=row["q"],
                    ready=ready,
                    scheduled=s[1],
                    running=int(row["leased"]),
                    waiting=s[0],
                    paused=bool(conf.get("paused")),
                    concurrency=int(limit) if limit else None,
                    completed_1m=s[2],
                    completed_1h=s[3],
                    failed_1m=s[4],
                    failed_1h=s[5],
                    delayed=int(row["delayed"]),
                    ready_exact="ready" in counted or len(row["groups"]) <= MAX_GROUPS,
                    jobs=row["jobs"],
                    unserved=max(counted.get("unserved", 0), 0),
                )
            )
        return out

    async def workers(self) -> list[WorkerInfo]:
        """Workers with a heartbeat in the last hour, newest first. Cost: ZREVRANGE
        (<= 500) + HMGET of their info + TIME."""
        r, k = self.ns.redis, self.ns.keys
        now = await self.server_ms()
        entries = await r.zrevrange(k.workers(), 0, MAX_WORKERS - 1, withscores=True)
        if not entries:
            return []
        infos = await r.hmget(k.worker_info(), [m for m, _ in entries])
        out = []
        for (member, expiry), raw in zip(entries, infos, strict=True):
            wid = _txt(member)
            host, pid = worker_parts(wid)
            info: dict[str, Any] = json.loads(raw) if raw else {}
            beat = info.get("at")
            out.append(
                WorkerInfo(
                    id=wid,
                    host=info.get("host", host),
                    pid=info.get("pid", pid),
                    alive=expiry > now,
                    last_heartbeat=from_ms(beat) if beat else None,
                    heartbeat_age=(now - beat) / 1000 if beat else None,
                    queues=list(info.get("queues", [])),
                    concurrency=info.get("concurrency"),
                    running=info.get("running"),
                    started_at=from_ms(info.get("started")),
                )
            )
        return out

    async def totals(self) -> dict[str, int]:
        """Runs retained per status. Cost: one ZCARD per status (of its id-ordered index;
        running: of the leases of each queue that leased runs)."""
        r, k = self.ns.redis, self.ns.keys
        queues = [q.decode() for q in await r.smembers(k.leased_queues())]
        indexed = [s for s in STATUSES if s != "running"]
        async with r.pipeline(transaction=False) as pipe:
            for s in indexed:
                pipe.zcard(k.ord_status(s))
            for q in queues:
                pipe.zcard(k.leases(q))
            counts = await pipe.execute()
        totals = dict(zip(indexed, counts, strict=False))
        totals["running"] = sum(counts[len(indexed) :])
        return {s: int(totals[s]) for s in STATUSES}

    async def overview(self) -> Overview:
        """Queues, workers and totals (the dashboard's first page)."""
        workers = await self.workers()
        queues = await self.queues(workers)
        return Overview(queues, workers, await self.totals(), from_ms(await self.server_ms()))

    async def runs(self, **filters: Any) -> RunPage:
        """A page of runs (see reads.list_runs)."""
        return await list_runs(self.ns, **filters)

    async def run(self, run_id: str) -> RunInfo | None:
        """One run (HGETALL)."""
        return await get_run(self.ns, run_id)

    async def view(self, run_id: str) -> RunView | None:
        """One run in full: steps, pending waits, links (views.run_view; one HGETALL)."""
        return await run_view(self.ns, run_id)

    async def find(self, job: str, idempotency_key: str) -> RunInfo | None:
        """The run an idempotency key points to."""
        return await find_run(self.ns, job, idempotency_key)

    async def children(self, info: RunInfo) -> list[str]:
        """Child runs a run started with `invoke` (from its timeline; no read)."""
        kids = [e.get("child") for e in info.timeline if e.get("type") == "child_started"]
        return list(dict.fromkeys(c for c in kids if isinstance(c, str)))

    async def recent_events(self, per_name: int = 20) -> list[Event]:
        """Recent events of the 50 most recently sent names, newest first. Cost: ZREVRANGE
        of the name index, then per name ZREVRANGE of its log and HMGET of its data."""
        r, k = self.ns.redis, self.ns.keys
        names = [_txt(n) for n in await r.zrevrange(k.event_names(), 0, MAX_EVENT_NAMES - 1)]
        async with r.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.zrevrange(k.event_log(n), 0, per_name - 1, withscores=True)
            logs = await pipe.execute()
        async with r.pipeline(transaction=False) as pipe:
            for n, log in zip(names, logs, strict=True):
                pipe.hmget(k.event_data(n), [m for m, _ in log] or ["-"])
            datas = await pipe.execute()
        out: list[Event] = []
        for n, log, data in zip(names, logs, datas, strict=True):
            for (eid, ts), raw in zip(log, data, strict=False):
                value = self._event_data(raw)
                if isinstance(value, dict) and "data" in value:
                    value = value["data"]
                out.append(Event(n, _txt(eid), value, from_ms(int(ts)) or datetime.min))
        return sorted(out, key=lambda e: e.ts, reverse=True)

    def _event_data(self, raw: bytes | None) -> Any:
        """A recorded event, or a note saying it is damaged: one bad record (stored by an
        older version) does not fail the list."""
        try:
            return self.ns.serializer.loads(raw) if raw else None
        except Exception as exc:
            return f"<damaged: does not deserialize ({exc!r})>"

    async def waiters(self, limit: int = MAX_WAITERS) -> list[Waiter]:
        """The newest waiting runs and what each waits for: one Waiter per pending wait
        (a run parked on a gather of waits has several). Cost: one ZREVRANGE of the
        waiting index, then per run (<= limit) one HGET and one HKEYS, and one HMGET of
        its wait fields."""
        r, k = self.ns.redis, self.ns.keys
        ids = [_txt(i) for i in await r.zrevrange(k.idx_status("waiting"), 0, limit - 1)]
        async with r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(k.run(i), "job")
                pipe.hkeys(k.run(i))
            rows = await pipe.execute()
        jobs = rows[0::2]
        names = [[f for f in fields if f.startswith(b"w:")] for fields in rows[1::2]]
        async with r.pipeline(transaction=False) as pipe:
            for i, fs in zip(ids, names, strict=True):
                pipe.hmget(k.run(i), fs or ["w:"])
            metas = await pipe.execute()
        scores = await self._scores(k.idx_status("waiting"), ids)
        out = []
        for i, job, fs, raws, score in zip(ids, jobs, names, metas, scores, strict=True):
            for f, raw in zip(fs, raws, strict=False):
                if raw is None:
                    continue
                w = json.loads(raw)
                paths = [p for p in (w.get("s") or "").split(",") if p]
                out.append(
                    Waiter(
                        i,
                        _txt(job) if job else "",
                        _txt(f)[2:],
                        w.get("k", ""),
                        w.get("e"),
                        paths,
                        w.get("c"),
                        from_ms(score),
                        from_ms(w["d"]) if w.get("d") else None,
                    )
                )
        return out

    async def _scores(self, key: str, ids: list[str]) -> list[Any]:
        if not ids:
            return []
        async with self.ns.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.zscore(key, i)
            return [int(s) if s is not None else None for s in await pipe.execute()]
