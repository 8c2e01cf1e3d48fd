"""Queue stats for operators (`Inspector.queues`): per queue the runs ready, scheduled,
running, waiting and held, the finished counts of the last minute and hour, the conf.
With partitions each one's structures are read in the same pipeline and summed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._core.fanout import each, pipelined, sum_rows
from .._core.keys import Keys
from .._core.namespace import Namespace
from .._core.scripts import QueueStats as Gauges

MAX_GROUPS = 64  # ready groups counted per queue (more: the count is a lower bound)
# Per-queue counters the scripts may keep in K.qstat (metrics): when present they replace
# the counts computed from ready sets and per-job indexes (exact per queue, O(1)).
COUNTERS = ("ready", "scheduled", "waiting", "unserved")


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


def _txt(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _ready_groups(row: dict[str, Any]) -> list[str]:
    """The ready groups whose sets are counted (none when a counter says it)."""
    if row["counters"].get("ready") is not None:
        return []
    groups: list[str] = row["groups"][:MAX_GROUPS]
    return groups


def _part_counts(row: dict[str, Any], cards: Iterator[Any]) -> list[int]:
    """One partition's counts of a queue: ready, scheduled, running, waiting, completed
    and failed in the last minute and hour, delayed, inexact (1 when more than MAX_GROUPS
    groups had ready runs and no counter), unserved."""
    counted = {c: int(v) for c, v in row["counters"].items() if v is not None}
    ready = sum(int(next(cards)) for _ in _ready_groups(row))
    ready = counted.get("ready", ready)
    s = row["sums"]
    waiting, scheduled = counted.get("waiting", s[0]), counted.get("scheduled", s[1])
    exact = "ready" in counted or len(row["groups"]) <= MAX_GROUPS
    return [
        ready,
        scheduled,
        int(row["leased"]),
        waiting,
        s[2],
        s[3],
        s[4],
        s[5],
        int(row["delayed"]),
        0 if exact else 1,
        max(counted.get("unserved", 0), 0),
    ]


async def queue_stats(ns: Namespace, names: dict[str, list[str]], now: int) -> list[QueueStats]:
    """Stats of the queues `names` (queue -> its jobs) at server time `now` (ms). Cost:
    two pipelines: per queue ZCARD leases and delayed, HGETALL conf, ZRANGE ring (64
    groups), HMGET of the counters; per job 2 ZCARD + 4 ZCOUNT on the per-job status
    indexes; then one ZCARD per ready group (<= 64 per queue, none when a `ready` counter
    exists). Without counters, per-queue waiting/scheduled counts sum the per-job indexes
    of the queue's jobs (exact unless a job's runs are started on several queues);
    finished counts always do. With partitions, all but the conf is read on each
    partition (in the same pipelines) and summed."""

    def add(pipe: Any, p: int, k: Keys) -> None:
        for q, jobs in names.items():
            pipe.zcard(k.leases(q))
            pipe.zcard(k.delayed(q))
            if p == 0:  # namespace-wide
                pipe.hgetall(ns.keys.queue_conf(q))
            pipe.zrange(k.ring(q), 0, MAX_GROUPS)
            pipe.hmget(k.queue_stat(q), list(COUNTERS))
            for j in jobs:
                pipe.zcard(k.idx_job_status(j, "waiting"))
                pipe.zcard(k.idx_job_status(j, "scheduled"))
                for s in ("completed", "failed"):
                    pipe.zcount(k.idx_job_status(j, s), now - 60_000, "+inf")
                    pipe.zcount(k.idx_job_status(j, s), now - 3_600_000, "+inf")

    confs: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []  # per partition, per queue
    for p, replies in enumerate(await pipelined(ns, add)):
        it = iter(replies)
        for q, jobs in names.items():
            leased, delayed = next(it), next(it)
            if p == 0:
                confs[q] = next(it)
            groups, counters = next(it), next(it)
            sums = [0] * 6
            for _ in jobs:
                for i in range(6):
                    sums[i] += int(next(it))
            rows.append(
                {
                    "p": p,
                    "q": q,
                    "leased": leased,
                    "delayed": delayed,
                    "groups": [_txt(g) for g in groups],
                    "sums": sums,
                    "counters": dict(zip(COUNTERS, counters, strict=True)),
                }
            )
    async with ns.redis.pipeline(transaction=False) as pipe:
        for row in rows:
            for g in _ready_groups(row):
                pipe.zcard(ns.part_keys[row["p"]].ready(row["q"], g))
        cards = iter(await pipe.execute())
    per_queue: dict[str, list[int]] = {}
    for row in rows:
        got = _part_counts(row, cards)
        per_queue[row["q"]] = sum_rows([per_queue[row["q"]], got]) if row["p"] else got
    out = []
    for q, jobs in names.items():
        conf = {_txt(a): _txt(b) for a, b in confs[q].items()}
        ready, sched, running, waiting, c1m, c1h, f1m, f1h, delayed, inexact, unserved = per_queue[
            q
        ]
        limit = conf.get("concurrency")
        out.append(
            QueueStats(
                name=q,
                ready=ready,
                scheduled=sched,
                running=running,
                waiting=waiting,
                paused=bool(conf.get("paused")),
                concurrency=int(limit) if limit else None,
                completed_1m=c1m,
                completed_1h=c1h,
                failed_1m=f1m,
                failed_1h=f1h,
                delayed=delayed,
                ready_exact=not inexact,
                jobs=jobs,
                unserved=unserved,
            )
        )
    return out


async def queue_gauges(ns: Namespace, queues: Sequence[str]) -> tuple[int, list[Gauges]]:
    """(live workers, per queue its gauges) for metrics: `queues` plus those of the
    published job map. One `queue_stats` script call; with partitions, that call on the
    namespace-wide keys gives the live workers and the queues, then one call per
    partition (on its own keys: no job map there) gives its gauges, summed."""
    if ns.partitions == 1:
        return await ns.scripts.queue_stats(queues)
    alive, found = await ns.scripts.queue_stats(queues)
    names = [g.queue for g in found]
    parts = await each(ns, lambda p: ns.part_scripts(p).queue_stats(names))
    per_part = [stats for _, stats in parts]
    out = []
    for i, q in enumerate(names):
        ready, scheduled, running, waiting, unserved = sum_rows(
            [
                (g.ready, g.scheduled, g.running, g.waiting, g.unserved)
                for g in (s[i] for s in per_part)
            ]
        )
        out.append(Gauges(q, ready, scheduled, running, waiting, unserved))
    return alive, out
