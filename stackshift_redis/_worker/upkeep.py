"""A worker's background duties: setup checks, promotion of due runs, lease renewal,
recovery of expired leases and stale deliveries, heartbeats and consumer hygiene."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import NoPermissionError, ResponseError

from .._attempt.execution import Execution
from .._client.schedules import ScheduleDuty
from .._core.jobs import QueueConfig
from .._core.keys import GROUP
from .._core.namespace import Namespace
from ..errors import LayoutError, StackShiftError
from .outage import UNAVAILABLE, Outage
from .relay import Relay

log = logging.getLogger("stackshift.worker")
MIN_REDIS = (6, 2)
HEARTBEAT_S = 5.0
HYGIENE_S = 60.0
RECONCILE_S = 10.0  # walk the queued index for runs that lost their ready entry
RECONCILE_BATCH, RECONCILE_BATCHES = 200, 5
TRIM_LIMIT = 1000  # expired index entries removed per index per script call
TRIM_ROUNDS = 20  # script calls per group of indexes per duty round, at most
FINAL = ("completed", "failed", "cancelled")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


class Upkeep:
    """Background duties of one worker.

    `held()` lists the attempts the worker runs now (for renewal and cancel notices);
    `conf(queue)` gives a queue's effective settings and `on_heartbeat()` refreshes what
    the worker registers (registration.py); `outage` says Redis is unreachable (one line,
    then backoff); `concurrency` is shown to operators (None: not a worker's);
    `on_refused(exc)` is told a LayoutError (a newer layout: the worker stops).
    """

    def __init__(
        self,
        ns: Namespace,
        worker_id: str,
        queues: list[str],
        *,
        held: Callable[[], list[tuple[Execution, asyncio.Task[None]]]],
        poll_interval: float,
        conf: Callable[[str], QueueConfig],
        on_heartbeat: Callable[[], Awaitable[Any]],
        outage: Outage,
        concurrency: int | None = None,
        on_refused: Callable[[LayoutError], None] | None = None,
    ) -> None:
        self.ns = ns
        self.worker_id = worker_id
        self.queues = queues
        self.held = held
        self.poll_interval = poll_interval
        self.conf = conf
        self.on_heartbeat = on_heartbeat
        self.outage = outage
        self._next: dict[str, float] = {}
        self._control_ids: list[Any] = ["0-0"] * ns.partitions  # a cursor per partition
        self._reconcile_at = [0] * ns.partitions
        retention_s = ns.settings.retention_ms / 1000
        self.trim_every = min(30.0, max(1.0, retention_s / 2))
        self.schedules = ScheduleDuty(ns)
        self.relay = Relay(ns, worker_id)  # partitions: effects across partitions
        self.stopped = asyncio.Event()
        self.concurrency = concurrency
        self._started_ms: float | None = None
        self.on_refused = on_refused  # the namespace has a newer layout: stop the worker
        self._sweep: asyncio.Task[None] | None = None  # layout.py: the rolling-deploy sweep

    async def setup(self, check: bool = True) -> None:
        """Check the server (unless done already), note the control stream, heartbeat
        (registration.py publishes jobs, triggers and queue settings)."""
        if check:
            await self.check_server()
        for p, k in enumerate(self.ns.part_keys):
            last = await self.ns.redis.xrevrange(k.control(), count=1)
            self._control_ids[p] = last[0][0] if last else "0-0"
        await self.heartbeat()
        await self.schedules.sync_jobs()

    async def check_server(self) -> None:
        """Refuse Redis older than 6.2; warn loudly unless maxmemory-policy is noeviction.
        INFO or CONFIG denied (ACLs, managed services) skips that check."""
        r = self.ns.redis
        try:
            info = await r.info("server")
            version = str(info.get("redis_version", "0.0"))
            if "redis_version" in info and _version(version) < MIN_REDIS:
                raise StackShiftError(f"Redis {version} is too old: stackshift-redis needs 6.2+")
        except (NoPermissionError, ResponseError):
            pass
        policy: str | None = None
        with contextlib.suppress(NoPermissionError, ResponseError):
            policy = (await r.info("memory")).get("maxmemory_policy")
        if policy is None:
            with contextlib.suppress(NoPermissionError, ResponseError):
                policy = (await r.config_get("maxmemory-policy")).get("maxmemory-policy")
        if policy is None:
            log.info("could not read maxmemory-policy (INFO and CONFIG denied): not checked")
            return
        policy = policy.decode() if isinstance(policy, bytes) else str(policy)
        if policy != "noeviction":
            log.warning(
                "Redis maxmemory-policy is %r: Redis may evict runs, steps and state under "
                "memory pressure. Set maxmemory-policy noeviction for durable runs.",
                policy,
            )

    def _due(self, name: str, every: float) -> bool:
        now = time.monotonic()
        if now >= self._next.get(name, 0.0):
            self._next[name] = now + every
            return True
        return False

    async def loop(self) -> None:
        """Run the duties until `stopped` is set (after the worker drained its runs)."""
        while not self.stopped.is_set():
            try:
                wait = await self.tick()
                self.outage.ok("upkeep")
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                await self.outage.failed(exc, "upkeep")
                wait = 0.0
            except LayoutError as exc:
                if self.on_refused is None:
                    raise
                self.on_refused(exc)
                return
            except Exception:
                log.exception("worker %s: upkeep failed; retrying", self.worker_id)
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), wait)

    async def tick(self) -> float:
        """One round of duties; returns seconds until the next round."""
        wait = self.poll_interval
        ns = self.ns
        held = self.held()
        if held:
            await self.read_control(held)
        for q in self.queues:
            for p in range(ns.partitions):
                _, next_ms = await ns.part_scripts(p).promote(q)
                if next_ms >= 0:
                    wait = min(wait, next_ms / 1000)
            vt = self.conf(q).visibility_timeout
            if self._due(f"renew:{q}", vt / 3):
                await self.renew(q, vt)
            if self._due(f"reclaim:{q}", min(1.0, vt / 3)):
                for p in range(ns.partitions):
                    await ns.part_scripts(p).reclaim(q, ns.settings.retention_ms)
        wait = min(wait, await self.schedules.poll())
        await self.relay.tick()
        if self._due("heartbeat", HEARTBEAT_S):
            await self.heartbeat()
        if self._due("hygiene", HYGIENE_S):
            await self.hygiene()
        if self._due("reconcile", RECONCILE_S):
            await self.reconcile()
        if self._due("trim", self.trim_every):
            await self.trim()
        if self.ns.layout.sweep_due() and (self._sweep is None or self._sweep.done()):
            self._sweep = asyncio.create_task(self._run_sweep(), name="stackshift-sweep")
        return max(wait, 0.005)

    async def _run_sweep(self) -> None:
        """The rolling-deploy sweep (layout.py), in the background: conversions run again
        while workers of an older release are alive and for a while after a migration."""
        try:
            await self.ns.layout.sweep()
        except LayoutError as exc:
            if self.on_refused is not None:
                self.on_refused(exc)
        except UNAVAILABLE:
            pass  # the next check tells again whether one is due
        except Exception:
            log.exception("worker %s: the rolling-deploy sweep failed", self.worker_id)

    async def reconcile(self) -> None:
        """Re-queue queued runs that lost their ready entry (a crash mid-script, damaged
        data): a bounded walk of the queued index, resumed where the last round stopped."""
        repaired = 0
        for p in range(self.ns.partitions):
            for _ in range(RECONCILE_BATCHES):
                _, fixed, self._reconcile_at[p] = await self.ns.part_scripts(p).reconcile(
                    self._reconcile_at[p], RECONCILE_BATCH, self.ns.settings.retention_ms
                )
                repaired += fixed
                if self._reconcile_at[p] == 0:
                    break
        if repaired:
            log.warning("re-queued %d queued runs that were missing from their queue", repaired)

    async def trim(self) -> int:
        """Drop finished-run index entries older than the retention (bounded), on each
        partition (with its done and control streams)."""
        jobs = set(self.ns.registry.jobs)
        jobs |= {j.decode() for j in await self.ns.redis.hkeys(self.ns.keys.jobs())}
        removed = 0
        for p, k in enumerate(self.ns.part_keys):
            indexes = [(k.idx_status(s), k.ord_status(s)) for s in FINAL]
            indexes += [
                (k.idx_job_status(job, s), k.ord_job_status(job, s))
                for job in sorted(jobs)
                for s in FINAL
            ]
            scripts = self.ns.part_scripts(p)
            for lo in range(0, len(indexes), 50):
                for _ in range(TRIM_ROUNDS):  # each call bounded; more calls while it has work
                    n = await scripts.trim(
                        indexes[lo : lo + 50], self.ns.settings.retention_ms, TRIM_LIMIT, 60_000
                    )
                    removed += n
                    if n < TRIM_LIMIT:
                        break
        return removed

    async def due_now(self) -> float:
        """One round of every duty whatever its interval: a TestEnv calls it after moving
        its clock, so whatever a duty fires (due runs, timers, retries) fires there too."""
        self._next.clear()
        self.schedules.look_now()
        return await self.tick()

    async def next_due_ms(self) -> int | None:
        """Ms (script clock) until the next delayed run, retry or timer of any queue, or
        None when nothing is scheduled: a TestEnv moves its clock from one to the next."""
        soonest: int | None = None
        for q in self.queues:
            for p in range(self.ns.partitions):
                _, wait = await self.ns.part_scripts(p).promote(q)
                if wait >= 0 and (soonest is None or wait < soonest):
                    soonest = wait
        _, wait, _ = await self.ns.scripts.due_schedules(0)  # the next schedule tick
        if wait >= 0 and (soonest is None or wait < soonest):
            soonest = wait
        return soonest

    async def read_control(self, held: list[tuple[Execution, asyncio.Task[None]]]) -> None:
        """Flag running attempts whose runs were cancelled (they stop at their next step):
        each partition's control stream, from its own cursor (one pipeline when P > 1)."""
        by_id = {ex.run_id: ex for ex, _ in held}
        ns = self.ns
        if ns.partitions == 1:
            replies = [await ns.redis.xread({ns.keys.control(): self._control_ids[0]}, count=500)]
        else:
            async with ns.redis.pipeline(transaction=False) as pipe:
                for p, k in enumerate(ns.part_keys):
                    pipe.xread({k.control(): self._control_ids[p]}, count=500)
                replies = await pipe.execute()
        for p, reply in enumerate(replies):
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._control_ids[p] = entry_id
                    ex = by_id.get(fields.get(b"cancel", b"").decode())
                    if ex is not None:
                        ex.cancel_requested = True

    async def renew(self, queue: str, vt: float) -> None:
        """Extend the leases of runs this worker holds in `queue` (per partition)."""
        held = [(ex, task) for ex, task in self.held() if ex.queue == queue and not ex.finished]
        by_part: dict[int, list[tuple[Execution, asyncio.Task[None]]]] = {}
        for ex, task in held:
            by_part.setdefault(self.ns.part_of(ex.run_id), []).append((ex, task))
        for p, runs in sorted(by_part.items()):
            await self._renew_part(p, queue, runs, vt)

    async def _renew_part(
        self, part: int, queue: str, held: list[tuple[Execution, asyncio.Task[None]]], vt: float
    ) -> None:
        for lo in range(0, len(held), 200):
            chunk = held[lo : lo + 200]
            pairs = [(ex.run_id, ex.token) for ex, _ in chunk]
            sent = time.monotonic()
            states = await self.ns.part_scripts(part).renew(queue, pairs, round(vt * 1000))
            for (ex, task), state in zip(chunk, states, strict=True):
                if ex.finished:  # its outcome is being recorded
                    continue
                if state == "lost" and ex.parking.ending:  # its own park ended the lease
                    continue
                if state != "lost":
                    ex.confirmed(sent)
                if state == "cancel":
                    ex.cancel_requested = True
                elif state == "lost":
                    ex.lost = True
                    task.cancel()
                    log.warning(
                        "run %s: lease lost; stopping this attempt", ex.run_id, extra=ex.log_extra
                    )

    async def _now_ms(self) -> float:
        """The Redis server clock (workers' clocks may disagree)."""
        secs, micros = await self.ns.redis.time()
        return float(secs) * 1000 + float(micros) / 1000

    async def heartbeat(self) -> None:
        """Record this worker as alive (keys.workers(), expiring entries; server clock) with
        what it serves (keys.worker_info(), for `stackshift workers`); forget workers whose
        heartbeat is an hour old (at most 100 per beat)."""
        now_ms = await self._now_ms()
        self._started_ms = self._started_ms or now_ms
        k = self.ns.keys
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            "concurrency": self.concurrency,
            "running": len(self.held()),
            "at": round(now_ms),
            "started": round(self._started_ms),
            "layout": self.ns.layout.mine,
            "versions": {j: sorted(v) for j, v in self.ns.registry.versions.items()},
        }
        async with self.ns.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(k.workers(), {self.worker_id: now_ms + 3 * HEARTBEAT_S * 1000})
            pipe.hset(k.worker_info(), self.worker_id, json.dumps(info))
            pipe.zrangebyscore(k.workers(), "-inf", now_ms - 3600_000, start=0, num=100)
            stale = (await pipe.execute())[2]
        if stale:
            async with self.ns.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(k.workers(), *stale)
                pipe.hdel(k.worker_info(), *stale)
                await pipe.execute()
        await self.on_heartbeat()

    async def hygiene(self) -> None:
        """Delete consumers whose worker is gone (its heartbeat expired; a consumer is named
        by its worker id) or that have been idle for long. Ticket reads use NOACK, so no
        consumer has pending entries to lose."""
        live = set(await self.live_workers())
        for q in self.queues:
            vt_ms = self.conf(q).visibility_timeout * 1000
            for p, k in enumerate(self.ns.part_keys):
                try:
                    consumers = await self.ns.redis.xinfo_consumers(k.stream(q), GROUP)
                except ResponseError:  # the stream or group is gone: the fetch loop recovers it
                    continue
                for c in consumers:
                    name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
                    if name == self.worker_id:
                        continue
                    if name not in live or c["idle"] > max(600_000, 10 * vt_ms):
                        await self.ns.part_scripts(p).drop_consumer(q, name)

    async def nothing_due(self) -> bool:
        """For burst mode: no queue has a run ready (and unpaused) or due now, on any
        partition."""
        r = self.ns.redis
        for q in self.queues:
            for p, k in enumerate(self.ns.part_keys):
                _, next_ms = await self.ns.part_scripts(p).promote(q)
                if next_ms == 0:
                    return False
                paused = await r.hexists(k.queue_conf(q), "paused")
                if not paused and await r.exists(k.ring(q)):
                    return False
        return True

    async def teardown(self, write: bool = True) -> None:
        """Leave the group cleanly: drop our heartbeat and our consumer (unless `write` is
        False: a worker refused by a newer layout writes nothing; its heartbeat expires)."""
        if self._sweep is not None:
            self._sweep.cancel()
            await asyncio.wait([self._sweep])
        if not write:
            return
        with contextlib.suppress(Exception):
            await self.ns.redis.zrem(self.ns.keys.workers(), self.worker_id)
            await self.ns.redis.hdel(self.ns.keys.worker_info(), self.worker_id)
            for q in self.queues:
                for p in range(self.ns.partitions):
                    await self.ns.part_scripts(p).drop_consumer(q, self.worker_id)

    async def live_workers(self) -> list[str]:
        """Ids of workers whose heartbeat has not expired."""
        ids: list[Any] = await self.ns.redis.zrangebyscore(
            self.ns.keys.workers(), await self._now_ms(), "+inf"
        )
        return [i.decode() for i in ids]
