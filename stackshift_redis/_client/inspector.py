"""Read-only inspection of a namespace for operators: queues, workers, runs, events.

The `stackshift` CLI and the dashboard read through `Inspector` only. Every read is served
from indexes with bounded commands (no KEYS, no SCAN): queue structures (ready sets,
leases, delays, settings), the per-job status indexes, the workers' heartbeat ZSET and
info HASH, the event-name ZSET and the event logs. Costs are in each method's docstring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._core.fanout import each, merge_desc, pipelined, sum_rows
from .._core.keys import STATUSES, Keys
from .._core.namespace import Namespace
from .._core.records import Event, RunInfo, RunPage, from_ms
from .queue_view import QueueStats as QueueStats
from .queue_view import queue_stats
from .reads import find_run, get_run, list_runs
from .views import RunView, run_view
from .views import jsonable as jsonable
from .views import waterfall as waterfall

MAX_WORKERS = 500
MAX_EVENT_NAMES = 50
MAX_WAITERS = 200


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
        """Stats of every known queue (queue_view.queue_stats has the cost)."""
        names = await self.queue_names(workers)
        if not names:
            return []
        return await queue_stats(self.ns, names, await self.server_ms())

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
        running: of the leases of each queue that leased runs), per partition (summed)."""
        r = self.ns.redis
        indexed = [s for s in STATUSES if s != "running"]

        async def count(p: int) -> list[int]:
            k = self.ns.part_keys[p]
            queues = [q.decode() for q in await r.smembers(k.leased_queues())]
            async with r.pipeline(transaction=False) as pipe:
                for s in indexed:
                    pipe.zcard(k.ord_status(s))
                for q in queues:
                    pipe.zcard(k.leases(q))
                counts = await pipe.execute()
            return [int(n) for n in counts[: len(indexed)]] + [sum(counts[len(indexed) :])]

        totals = dict(zip([*indexed, "running"], sum_rows(await each(self.ns, count)), strict=True))
        return {s: totals[s] for s in STATUSES}

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
        of the name index, then per name ZREVRANGE of its log and HMGET of its data. With
        partitions, each has its own name index and logs (merged: an event sent to every
        partition is listed once)."""
        ns = self.ns
        names = await self._event_names()

        def add(pipe: Any, p: int, k: Keys) -> None:
            for n in names:
                pipe.zrevrange(k.event_log(n), 0, per_name - 1, withscores=True)

        parts = await pipelined(ns, add)
        logs: list[list[tuple[Any, float, int]]] = []  # per name: (id, ms, partition)
        for i in range(len(names)):
            merged = merge_desc(
                [[(m, ts, p) for m, ts in part[i]] for p, part in enumerate(parts)],
                key=lambda e: e[1],
            )
            log, seen = [], set()
            for e in merged:  # an event sent to several partitions: listed once
                if e[0] not in seen:
                    seen.add(e[0])
                    log.append(e)
            logs.append(log[:per_name])
        async with ns.redis.pipeline(transaction=False) as pipe:
            reads: list[tuple[int, int]] = []  # (name, partition) per HMGET
            for i, (n, log) in enumerate(zip(names, logs, strict=True)):
                for p, k in enumerate(ns.part_keys):
                    ids = [m for m, _, at in log if at == p]
                    if ids or ns.partitions == 1:
                        pipe.hmget(k.event_data(n), ids or ["-"])
                        reads.append((i, p))
            datas = dict(zip(reads, await pipe.execute(), strict=True))
        out: list[Event] = []
        for i, (n, log) in enumerate(zip(names, logs, strict=True)):
            raws = {p: iter(datas.get((i, p), [])) for p in range(ns.partitions)}
            for eid, ts, p in log:
                value = self._event_data(next(raws[p], None))
                if isinstance(value, dict) and "data" in value:
                    value = value["data"]
                out.append(Event(n, _txt(eid), value, from_ms(int(ts)) or datetime.min))
        return sorted(out, key=lambda e: e.ts, reverse=True)

    async def _event_names(self) -> list[str]:
        """The most recently sent event names (each partition keeps its own index)."""
        ns, top = self.ns, MAX_EVENT_NAMES - 1
        if ns.partitions == 1:
            return [_txt(n) for n in await ns.redis.zrevrange(ns.keys.event_names(), 0, top)]
        parts = await pipelined(
            ns, lambda pipe, p, k: pipe.zrevrange(k.event_names(), 0, top, withscores=True)
        )
        latest: dict[str, float] = {}
        for part in parts:
            for n, ts in part[0]:
                latest[_txt(n)] = max(ts, latest.get(_txt(n), ts))
        return sorted(latest, key=lambda n: latest[n], reverse=True)[:MAX_EVENT_NAMES]

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
        its wait fields. With partitions, the newest of each partition's index, merged."""
        ns, r = self.ns, self.ns.redis
        if ns.partitions == 1:
            ids = [_txt(i) for i in await r.zrevrange(ns.keys.idx_status("waiting"), 0, limit - 1)]
        else:
            parts = await pipelined(
                ns,
                lambda pipe, p, k: pipe.zrevrange(
                    k.idx_status("waiting"), 0, limit - 1, withscores=True
                ),
            )
            newest = merge_desc([part[0] for part in parts], key=lambda e: e[1], limit=limit)
            ids = [_txt(i) for i, _ in newest]
        async with r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(ns.keys_of(i).run(i), "job")
                pipe.hkeys(ns.keys_of(i).run(i))
            rows = await pipe.execute()
        jobs = rows[0::2]
        names = [[f for f in fields if f.startswith(b"w:")] for fields in rows[1::2]]
        async with r.pipeline(transaction=False) as pipe:
            for i, fs in zip(ids, names, strict=True):
                pipe.hmget(ns.keys_of(i).run(i), fs or ["w:"])
            metas = await pipe.execute()
        scores = await self._scores(ids)
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

    async def _scores(self, ids: list[str]) -> list[Any]:
        if not ids:
            return []
        async with self.ns.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.zscore(self.ns.keys_of(i).idx_status("waiting"), i)
            return [int(s) if s is not None else None for s in await pipe.execute()]
