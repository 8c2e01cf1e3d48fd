"""What a worker publishes to the namespace, and how it puts it back when Redis lost it.

- Queue settings: a worker publishes only the queues configured in its process
  (`stackshift.queue(...)`), never erases a setting it was not given, and logs a warning
  naming both values when its setting differs from the published one (its own wins: a
  deploy that changes a limit takes effect). For a queue it consumes without configuring
  it, it uses the published visibility timeout.
- The job map and on_event triggers are owned by live workers: each heartbeat refreshes
  the entries this worker registers (lua/register.lua), and entries that no live worker
  refreshed for a few heartbeats are dropped, so a renamed or moved job stops being
  started. `StackShift.unregister_job(name)` drops one at once.
- Recovery: when Redis lost the namespace's keys (a restart without persistence,
  FLUSHALL, failover to an empty replica) the next ticket read fails with NOGROUP; the
  worker then re-creates its consumer groups, re-publishes its settings and registrations
  and logs one warning.
"""

from __future__ import annotations

import asyncio
import json
import logging

from .._core.definitions import describe, static_plan
from .._core.jobs import QueueConfig
from .._core.namespace import Namespace
from .dispatch import create_groups

log = logging.getLogger("stackshift.worker")
REGISTRATION_TTL_MS = 20_000  # four heartbeats: entries outlive a slow heartbeat or two


class Registration:
    """Publishes one worker's queue settings and registrations."""

    def __init__(self, ns: Namespace, worker_id: str, queues: list[str]) -> None:
        self.ns = ns
        self.worker_id = worker_id
        self.queues = queues
        self.confs: dict[str, QueueConfig] = {}
        """Effective settings of the consumed queues (local, else published, else default)."""
        self.recoveries = 0
        self.ttl_ms = REGISTRATION_TTL_MS  # how long a registration outlives its heartbeat

    def conf(self, queue: str) -> QueueConfig:
        """The effective settings of `queue`."""
        return self.confs.get(queue) or self.ns.registry.queue(queue)

    async def publish_queues(self) -> None:
        """Publish the settings configured here; adopt published ones for the rest."""
        r, k, local = self.ns.redis, self.ns.keys, self.ns.registry.queues
        async with r.pipeline(transaction=False) as pipe:
            for q in self.queues:
                pipe.hmget(k.queue_conf(q), "concurrency", "visibility_ms")
            published = await pipe.execute()
        async with r.pipeline(transaction=False) as pipe:
            for q, (conc, vis) in zip(self.queues, published, strict=True):
                conf = local.get(q)
                if conf is None:
                    vt = int(vis) / 1000 if vis is not None else QueueConfig(q).visibility_timeout
                    self.confs[q] = QueueConfig(q, int(conc) if conc is not None else None, vt)
                    continue
                self.confs[q] = conf
                vis_ms = round(conf.visibility_timeout * 1000)
                if vis is not None and int(vis) != vis_ms:
                    log.warning(
                        "queue %r: visibility_timeout %gs here differs from the published "
                        "%gs (another process configures it): publishing %gs",
                        q,
                        conf.visibility_timeout,
                        int(vis) / 1000,
                        conf.visibility_timeout,
                    )
                pipe.hset(k.queue_conf(q), "visibility_ms", vis_ms)
                if conf.concurrency is None:
                    continue  # not given here: never erase another process's limit
                if conc is not None and int(conc) != conf.concurrency:
                    log.warning(
                        "queue %r: concurrency %s here differs from the published %s "
                        "(another process configures it): publishing %s",
                        q,
                        conf.concurrency or "unlimited",
                        int(conc),
                        conf.concurrency or "unlimited",
                    )
                if conf.concurrency == 0:  # queue(name, concurrency=0): lift the limit
                    pipe.hdel(k.queue_conf(q), "concurrency")
                else:  # (with partitions, permits.py applies it across them)
                    pipe.hset(k.queue_conf(q), "concurrency", conf.concurrency)
            await pipe.execute()

    async def register(self) -> int:
        """Refresh this worker's job map entries, triggers and consumed queues (a heartbeat);
        returns how many stale entries of gone workers were dropped."""
        reg = self.ns.registry
        jobs = reg.jobs.values()
        dropped = await self.ns.scripts.register(
            self.ttl_ms,
            {j.name: j.queue for j in jobs},
            [(j.on_event, j.name, j.queue) for j in jobs if j.on_event],
            self.queues,
            [(name, sorted(vs)) for name, vs in reg.versions.items()],
        )
        if self.ns.partitions > 1 and reg.versions:
            versions = [(name, sorted(vs)) for name, vs in reg.versions.items()]
            parts = range(self.ns.partitions)
            released = await asyncio.gather(
                *(self.ns.part_scripts(p).register_part(self.ttl_ms, versions) for p in parts)
            )
            if sum(released):
                log.info("released %d runs held for versions this worker serves", sum(released))
        if dropped:
            log.info("dropped %d job map or trigger entries no live worker registers", dropped)
        return dropped

    async def publish_on_failure(self) -> None:
        """Publish each registered job's failure handler (read by
        lua/lib/start_on_failure.lua when a run fails for good)."""
        r, reg = self.ns.redis, self.ns.registry
        # with partitions, each partition has a copy (its runs' failures start handlers)
        hashes = {k.on_failure() for k in [self.ns.keys, *self.ns.part_keys]}
        async with r.pipeline(transaction=False) as pipe:
            for j in reg.jobs.values():
                for h in hashes:
                    if j.on_failure:
                        pipe.hset(h, j.name, j.on_failure)
                    else:
                        pipe.hdel(h, j.name)
                if j.on_failure and j.on_failure not in reg.jobs:
                    log.info(
                        "job %s: on_failure job %s is not registered in this worker "
                        "(its runs go to the queue published for it, else 'default')",
                        j.name,
                        j.on_failure,
                    )
            await pipe.execute()

    async def publish_definitions(self) -> str:
        """Publish each registered job's definition (its highest version's rules and its
        versions, `_core/definitions.py`): every caller applies it from now on."""
        reg = self.ns.registry
        defs = [
            (
                j.name,
                json.dumps(
                    describe(j, list(reg.versions.get(j.name, {j.version: j}))),
                    sort_keys=True,
                    separators=(",", ":"),
                ),
                j.queue,
                static_plan(j),
                j.version,
            )
            for j in reg.jobs.values()
        ]
        if not defs:
            return ""
        rev = await self.ns.scripts.publish_defs(defs)
        await self.ns.definitions.mirror()
        self.ns.definitions.clear()  # this process starts from what it published
        return rev

    async def setup(self) -> None:
        """At start: consumer groups, queue settings, definitions, registrations,
        failure handlers."""
        await create_groups(self.ns, self.queues)
        await self.publish_queues()
        await self.publish_definitions()
        await self.register()
        await self.publish_on_failure()

    async def recover(self, cause: str) -> None:
        """Redis lost the namespace's keys: put back what this worker publishes."""
        self.recoveries += 1
        log.warning(
            "worker %s: Redis lost this namespace's queues (%s; a restart without "
            "persistence, FLUSHALL or failover?): re-creating consumer groups, job map, "
            "triggers and queue settings",
            self.worker_id,
            cause,
        )
        await self.setup()


def is_lost_group(exc: BaseException) -> bool:
    """True for the error a ticket read gets when its stream or group is gone: NOGROUP, or
    (a read blocked while FLUSHALL deleted the stream) UNBLOCKED ... no longer exists."""
    text = str(exc)
    return "NOGROUP" in text or (text.startswith("UNBLOCKED") and "no longer exists" in text)
