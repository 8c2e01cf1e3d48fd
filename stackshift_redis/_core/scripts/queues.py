"""Scripts of the queue side: starting runs, the take path, finishing, upkeep."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from ..keys import GROUP
from .door import (
    Door,
    NewRun,
    QueueStats,
    ScriptCall,
    StartReply,
    TakenRun,
    TakeReply,
    _pairs,
    _str,
)
from .requests import FailRequest, HandBackRequest, StartRequest


class QueueScripts(Door):
    """Scripts of the queue side: starting runs, the take path, finishing, upkeep."""

    # starting runs
    def start_call(
        self, request: StartRequest, runs: Sequence[NewRun]
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `start` for runs of (run_id, idempotency key or None, payload
        [, flow-control plan JSON])."""
        k, r = self.keys, request
        keys: list[str] = []
        fields = json.dumps(dict(r.fields)) if r.fields else ""
        retention_ms = r.retention_ms or 86_400_000
        args: list[Any] = [k.prefix, r.job, r.queue, r.delay_ms, r.at_ms, r.idem_ttl_ms, fields]
        args += [len(runs), retention_ms, r.rev, r.version]
        for run in runs:
            run_id, idem, payload = run[0], run[1], run[2]
            keys += [k.run(run_id), k.idem(r.job, idem) if idem is not None else k.run(run_id)]
            plan = run[3] if len(run) > 3 else ""
            args += [run_id, "1" if idem is not None else "0", payload, plan]
        return keys, args

    async def start(self, request: StartRequest, runs: Sequence[NewRun]) -> list[StartReply]:
        """Create runs (under their flow-control plans) and make them ready or schedule them:
        (run_id | None, deduplicated, skipped reason | None) each."""
        keys, args = self.start_call(request, runs)
        reply = await self.call("start", keys, args)
        return [
            (_str(reply[i]) or None, bool(int(reply[i + 1])), _str(reply[i + 2]) or None)
            for i in range(0, len(reply), 3)
        ]

    # the take path and finishing
    async def take(
        self,
        queues: Sequence[tuple[str, int]],
        n: int,
        *,
        max_deliveries: int,
        retention_ms: int,
        taker: str = "direct",
    ) -> TakeReply:
        """Lease up to `n` ready runs from `queues`, (queue, lease_ms) pairs, in that order.
        Safe to re-send: the call's take id makes a repeat return the same runs."""
        k = self.keys
        keys: list[str] = [k.take(taker)]
        args: list[Any] = [k.prefix, n, max_deliveries, retention_ms, uuid.uuid4().hex]
        for q, lease_ms in queues:
            keys += [k.ring(q), k.leases(q), k.queue_conf(q), k.queue_stat(q), k.stream(q)]
            args += [q, lease_ms]
        taken: list[TakenRun] = []
        dropped: list[tuple[str, str, str]] = []
        for r in await self.call("take", keys, args):
            if r[1] != b"ok":
                dropped.append((_str(r[0]), _str(r[2]), _str(r[1])))
                continue
            taken.append(
                TakenRun(
                    run_id=_str(r[0]),
                    token=_str(r[2]),
                    execution=int(r[3]),
                    job=_str(r[4]),
                    payload=r[5],
                    event=r[6],
                    steps=list(r[7]),
                    fails=int(r[8] or 0),
                    resumed=bool(r[9]),
                    fields=_pairs(r[10]),
                    schedule=_str(r[11]),
                    scheduled_at=int(r[12] or 0),
                    waited_ms=int(r[13]),
                    resumed_by=_str(r[14]),
                    pending=tuple(_str(s) for s in r[15]),
                    version=int(r[16] or 1),
                    queue=_str(r[17]),
                )
            )
        return TakeReply(taken, dropped)

    def complete_call(
        self, run_id: str, token: str, result: bytes, retention_ms: int
    ) -> ScriptCall:
        """A prepared `complete`."""
        args = [self.keys.prefix, run_id, token, result, retention_ms]
        return ScriptCall("complete", run_id, [self.keys.run(run_id)], args)

    def fail_call(self, request: FailRequest) -> ScriptCall:
        """A prepared `fail` (outcome: retry | failed | cancelled)."""
        k, q = self.keys, request
        args = [k.prefix, q.run_id, q.token, q.error_json, q.outcome, q.delay_ms, q.retention_ms]
        return ScriptCall("fail", q.run_id, [k.run(q.run_id)], args)

    def hand_back_call(self, request: HandBackRequest) -> ScriptCall:
        """A prepared `hand_back`: a run of a job this worker does not register goes back
        (scheduled after delay_ms), or fails once it was handed back for limit_ms."""
        k, q = self.keys, request
        args = [k.prefix, q.run_id, q.token, q.delay_ms, q.limit_ms, q.retention_ms, q.error_json]
        return ScriptCall("hand_back", q.run_id, [k.run(q.run_id)], args)

    async def promote(self, queue: str, limit: int = 1000) -> tuple[int, int]:
        """Make due runs ready: (moved, ms to next due or -1)."""
        k = self.keys
        moved, wait = await self.call("promote", [k.delayed(queue)], [k.prefix, queue, limit])
        return int(moved), int(wait)

    async def reclaim(self, queue: str, retention_ms: int, limit: int = 100) -> list[str]:
        """Make runs with expired leases ready again; returns their ids."""
        k = self.keys
        ids = await self.call("reclaim", [k.leases(queue)], [k.prefix, queue, limit, retention_ms])
        return [_str(i) for i in ids]

    async def renew(self, queue: str, held: Sequence[tuple[str, str]], lease_ms: int) -> list[str]:
        """Extend leases of (run_id, token); per run 'ok' | 'cancel' | 'lost'."""
        k = self.keys
        keys = [k.leases(queue)] + [k.run(run_id) for run_id, _ in held]
        args: list[Any] = [lease_ms]
        for run_id, token in held:
            args += [run_id, token]
        return [_str(s) for s in await self.call("renew", keys, args)]

    async def reconcile(self, start: int, limit: int, retention_ms: int) -> tuple[int, int, int]:
        """Repair a batch of the queued index: (checked, repaired, next start rank or 0)."""
        k = self.keys
        args = [k.prefix, start, limit, retention_ms]
        checked, repaired, nxt = await self.call("reconcile", [k.ord_status("queued")], args)
        return int(checked), int(repaired), int(nxt)

    async def trim(
        self, indexes: Sequence[tuple[str, str]], retention_ms: int, limit: int, notify_keep_ms: int
    ) -> int:
        """Drop expired finished-run index entries (bounded per index) from each (time
        index, id-ordered index) pair; entries removed."""
        pairs = [key for pair in indexes for key in pair]
        keys = [self.keys.done(), self.keys.control(), *pairs]
        return int(await self.call("trim", keys, [retention_ms, limit, notify_keep_ms]))

    async def drop_consumer(self, queue: str, consumer: str) -> bool:
        """Delete a gone worker's consumer from the queue's group (it holds no pending
        entries: every read is NOACK)."""
        return bool(await self.call("drop_consumer", [self.keys.stream(queue)], [GROUP, consumer]))

    # the shared registry (workers' heartbeats)
    async def register(
        self,
        ttl_ms: int,
        jobs: dict[str, str],
        triggers: Sequence[tuple[str, str, str]],
        queues: Sequence[str],
        versions: Sequence[tuple[str, Sequence[int]]] = (),
    ) -> int:
        """Refresh a live worker's job map, triggers (event, job, queue), consumed queues
        and job versions (releasing runs held for them) for `ttl_ms`; drop entries no live
        worker refreshed. Returns how many."""
        k = self.keys
        keys = [k.owners(), k.jobs(), k.qlive()] + [k.triggers(e) for e, _, _ in triggers]
        args = [
            k.prefix,
            ttl_ms,
            json.dumps(jobs),
            json.dumps([list(t) for t in triggers]),
            json.dumps(list(queues)),
            json.dumps([[j, list(v)] for j, v in versions]),
        ]
        return int(await self.call("register", keys, args))

    async def permits(
        self, queue: str, op: str, limit: int, lease_ms: int, ids: Sequence[str]
    ) -> Any:
        """A queue's concurrency permits with partitions (lua/permits.lua): take -> the
        granted ids, renew -> how many are held, give -> 1 when a worker was refused."""
        args = [op, limit, lease_ms, *ids]
        keys = [self.keys.permits(queue), self.keys.queue_conf(queue)]
        return await self.call("permits", keys, args)

    async def register_part(
        self, ttl_ms: int, versions: Sequence[tuple[str, Sequence[int]]]
    ) -> int:
        """This partition's part of a heartbeat (P > 1): the job versions a live worker
        serves for `ttl_ms`, releasing runs held for them here. Returns how many."""
        k = self.keys
        keys = [k.job_versions(j) for j, _ in versions]
        args = [k.prefix, ttl_ms, json.dumps([[j, list(v)] for j, v in versions])]
        return int(await self.call("register_part", keys, args))

    async def unregister_job(self, job: str) -> int:
        """Remove `job` from the job map, every trigger and the published definitions; the
        number of job map and trigger entries removed."""
        k = self.keys
        keys = [k.owners(), k.jobs(), k.defs()]
        return int(await self.call("unregister_job", keys, [k.prefix, job]))

    # steps and durable waits (fenced by the lease token)

    async def queue_stats(self, queues: Sequence[str]) -> tuple[int, list[QueueStats]]:
        """(live workers, per queue its gauges): `queues` plus those of the published
        job map, in one call."""
        k = self.keys
        reply = await self.call("queue_stats", [k.jobs(), k.workers()], [k.prefix, *queues])
        stats = [
            QueueStats(_str(q[0]), int(q[1]), int(q[2]), int(q[3]), int(q[4]), int(q[5]))
            for q in reply[1:]
        ]
        return int(reply[0]), stats
