"""A worker's background duties: setup checks, promotion of due runs, lease renewal,
recovery of expired leases and stale deliveries, heartbeats and consumer hygiene."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoPermissionError, ResponseError

from .errors import StackShiftError
from .keys import GROUP

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("stackshift.worker")
MIN_REDIS = (6, 2)
HEARTBEAT_S = 5.0
HYGIENE_S = 60.0


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


class Upkeep:
    """Background duties of one worker."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.app = worker.app
        self._next: dict[str, float] = {}
        self._control_id: Any = "0-0"
        self.stopped = asyncio.Event()

    async def setup(self) -> None:
        """Check the server, create consumer groups, publish jobs and queue settings."""
        await self.check_server()
        r, k = self.app.redis, self.app.keys
        for q in self.w.queues:
            try:
                await r.xgroup_create(k.stream(q), GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        async with r.pipeline(transaction=False) as pipe:
            jobs = {j.name: j.queue for j in self.app.jobs.values()}
            if jobs:
                pipe.hset(k.jobs(), mapping=jobs)
            for j in self.app.jobs.values():
                if j.on_event:
                    pipe.hset(k.triggers(j.on_event), j.name, j.queue)
            for q in self.w.queues:
                conf = self.app.queue_config(q)
                pipe.hset(k.queue_conf(q), "visibility_ms", round(conf.visibility_timeout * 1000))
                if conf.concurrency:
                    pipe.hset(k.queue_conf(q), "concurrency", conf.concurrency)
                else:
                    pipe.hdel(k.queue_conf(q), "concurrency")
            await pipe.execute()
        last = await r.xrevrange(k.control(), count=1)
        self._control_id = last[0][0] if last else "0-0"
        await self.heartbeat()

    async def check_server(self) -> None:
        """Refuse Redis older than 6.2; warn loudly unless maxmemory-policy is noeviction.
        INFO or CONFIG denied (ACLs, managed services) skips that check."""
        r = self.app.redis
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
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: upkeep failed; retrying", self.w.id)
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), wait)

    async def tick(self) -> float:
        """One round of duties; returns seconds until the next round."""
        wait = self.w.poll_interval
        scripts = self.app.scripts
        if self.w.running:
            await self.read_control()
        for q in self.w.queues:
            _, next_ms = await scripts.promote(q)
            if next_ms >= 0:
                wait = min(wait, next_ms / 1000)
            vt = self.app.queue_config(q).visibility_timeout
            if self._due(f"renew:{q}", vt / 3):
                await self.renew(q, vt)
            if self._due(f"reclaim:{q}", min(1.0, vt / 3)):
                await scripts.reclaim(q, self.app.retention_ms)
            if self._due(f"autoclaim:{q}", vt / 2):
                await self.autoclaim(q, vt)
        if self._due("heartbeat", HEARTBEAT_S):
            await self.heartbeat()
        if self._due("hygiene", HYGIENE_S):
            await self.hygiene()
        return max(wait, 0.005)

    async def read_control(self) -> None:
        """Flag running attempts whose runs were cancelled (they stop at their next step)."""
        reply = await self.app.redis.xread({self.app.keys.control(): self._control_id}, count=500)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                self._control_id = entry_id
                held = self.w.running.get(fields.get(b"cancel", b"").decode())
                if held is not None:
                    held[0].cancel_requested = True

    async def renew(self, queue: str, vt: float) -> None:
        """Extend the leases of runs this worker holds in `queue`."""
        held = [
            (rid, ex)
            for rid, (ex, _) in self.w.running.items()
            if ex.queue == queue and not ex.finished
        ]
        for lo in range(0, len(held), 200):
            chunk = held[lo : lo + 200]
            pairs = [(run_id, ex.token) for run_id, ex in chunk]
            states = await self.app.scripts.renew(queue, pairs, round(vt * 1000))
            for (run_id, ex), state in zip(chunk, states, strict=True):
                entry = self.w.running.get(run_id)
                if entry is None or entry[0] is not ex or ex.finished:  # done, or a newer attempt
                    continue
                if state == "cancel":
                    entry[0].cancel_requested = True
                elif state == "lost":
                    entry[0].lost = True
                    entry[1].cancel()
                    log.warning("run %s: lease lost; stopping this attempt", run_id)

    async def autoclaim(self, queue: str, vt: float) -> None:
        """Take over entries delivered to a consumer that never claimed them (died)."""
        reply = await self.app.redis.xautoclaim(
            self.app.keys.stream(queue),
            GROUP,
            self.w.id,
            min_idle_time=round(vt * 1000),
            start_id="0-0",
            count=100,
        )
        entries = reply[1] if len(reply) > 1 else []
        pairs = [(e.decode(), f[b"r"].decode()) for e, f in entries if f]
        known = {e for e, _ in self.w.backlog[queue]}
        self.w.backlog[queue] += [p for p in pairs if p[0] not in known]

    async def _now_ms(self) -> float:
        """The Redis server clock (workers' clocks may disagree)."""
        secs, micros = await self.app.redis.time()
        return float(secs) * 1000 + float(micros) / 1000

    async def heartbeat(self) -> None:
        """Record this worker as alive (keys.workers(), expiring entries; server clock)."""
        now_ms = await self._now_ms()
        key = self.app.keys.workers()
        async with self.app.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {self.w.id: now_ms + 3 * HEARTBEAT_S * 1000})
            pipe.zremrangebyscore(key, "-inf", now_ms - 3600_000)
            await pipe.execute()

    async def hygiene(self) -> None:
        """Delete consumers with nothing pending whose worker is gone (its heartbeat expired;
        a consumer is named by its worker id) or that have been idle for long."""
        r, k = self.app.redis, self.app.keys
        live = set(await self.live_workers())
        for q in self.w.queues:
            vt_ms = self.app.queue_config(q).visibility_timeout * 1000
            for c in await r.xinfo_consumers(k.stream(q), GROUP):
                name = c["name"].decode() if isinstance(c["name"], bytes) else c["name"]
                if name == self.w.id or c["pending"] != 0:
                    continue
                if name not in live or c["idle"] > max(600_000, 10 * vt_ms):
                    await self.app.scripts.drop_consumer(q, name)

    async def idle(self) -> bool:
        """For burst mode, after a read found nothing new: nothing running or due here."""
        if self.w.running or any(self.w.backlog.values()):
            return False
        for q in self.w.queues:
            _, next_ms = await self.app.scripts.promote(q)
            if next_ms == 0:
                return False
        return True

    async def teardown(self) -> None:
        """Leave the group cleanly: drop our heartbeat and our consumer if nothing is pending."""
        r, k = self.app.redis, self.app.keys
        with contextlib.suppress(Exception):
            await r.zrem(k.workers(), self.w.id)
            for q in self.w.queues:
                await self.app.scripts.drop_consumer(q, self.w.id)

    async def live_workers(self) -> list[str]:
        """Ids of workers whose heartbeat has not expired."""
        ids: list[Any] = await self.app.redis.zrangebyscore(
            self.app.keys.workers(), await self._now_ms(), "+inf"
        )
        return [i.decode() for i in ids]
