"""Schedules: cron and interval runs, exactly once per tick across any number of workers.

A schedule is a hash (`keys.schedule(name)`) plus its entry in one sorted set of next fire
times (`keys.schedules()`, +inf while paused). Every worker runs `ScheduleDuty.poll()` in
its upkeep: one small script call (`due_schedules`) returns only the schedules due now by
the server clock, in a bounded batch, and when the next one is due, so an idle worker does
the same Redis work with 10,000 schedules as with 10. For each due schedule the worker
plans the ticks in Python (cron.py: cronsim, zoneinfo, catch-up) and calls
`fire_schedule`, which creates the tick's run and advances the schedule in one script,
compare-and-set on the next fire time it planned from: one worker wins each tick, and a
worker dying between planning and firing skips or doubles nothing. With partitions
(P > 1) the runs live on partitions and a fire takes two calls (schedule_parts.py).

`Schedules` is the API (`stackshift.schedules`): create (an upsert), pause, resume,
trigger, delete, get, list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .._core.cron import CATCHUPS, OVERLAPS, Cadence, check_choice, jitter_ms, make_cadence, plan
from .._core.keys import check_name
from .._core.namespace import Namespace
from .._core.records import Duration, from_ms, millis, new_run_id
from .._core.scripts import DueSchedule, FireScheduleRequest, UpsertScheduleRequest
from .._core.serializer import dumps_checked
from ..errors import ScheduleNotFoundError, StaleDefinitionsError
from .events import match_key
from .handles import RunHandle
from .schedule_parts import fire_parts, trigger_parts

log = logging.getLogger("stackshift.schedules")
POLL_S = 0.5  # an idle worker looks for due schedules this often (new ones are seen then)
BATCH = 100  # due schedules read per script call
MAX_BATCHES = 10  # per poll; the rest are fired at the next poll, right after
STALE_TRIES = 5  # see starting.py


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as stored: its definition, whether it is paused, when it fires next."""

    name: str
    job: str
    queue: str
    cron: str | None
    every: timedelta | None
    timezone: str
    payload: Any
    paused: bool
    overlap: str
    catchup: str
    jitter: timedelta
    next_fire_at: datetime | None  # None while paused
    last_run_id: str | None


def _s(h: dict[bytes, bytes], field: str, default: str = "") -> str:
    v = h.get(field.encode())
    return v.decode() if v is not None else default


def _cadence(h: dict[bytes, bytes]) -> Cadence:
    every = int(_s(h, "every", "0") or 0)
    return Cadence(_s(h, "cron") or None, every or None, _s(h, "tz", "UTC"))


async def server_ms(ns: Namespace) -> int:
    """The scripts' clock in ms (ticks follow it, not this process's clock): the Redis
    server's (on a cluster, the node holding the namespace), or a TestEnv's virtual one."""
    now_ms, _, _ = await ns.scripts.due_schedules(0)
    return now_ms


async def upsert(
    ns: Namespace,
    name: str,
    *,
    job: str,
    cron: str | None = None,
    every: Duration | None = None,
    payload: Any = None,
    timezone: str = "UTC",
    overlap: str = "allow",
    catchup: str = "latest",
    jitter: Duration = 0,
    queue_name: str | None = None,
    origin: str = "api",
) -> None:
    """Validate everything, then create or update the schedule in one script call."""
    check_name("schedule", name)
    check_name("job", job)
    cadence = make_cadence(cron, every, timezone)
    check_choice("overlap", overlap, OVERLAPS)
    check_choice("catchup", catchup, CATCHUPS)
    jitter_ms_ = millis(jitter, "jitter")
    data = dumps_checked(ns.serializer, payload, "schedule payload")
    queue = await ns.queue_for(job, queue_name)
    next_ms = cadence.next_after(await server_ms(ns))
    request = UpsertScheduleRequest(
        name=name,
        job=job,
        queue=queue,
        payload=data,
        cron=cadence.cron or "",
        every_ms=cadence.every_ms or 0,
        timezone=cadence.timezone,
        signature=cadence.signature,
        overlap=overlap,
        catchup=catchup,
        jitter_ms=jitter_ms_,
        origin=origin,
        next_ms=next_ms,
    )
    await ns.scripts.upsert_schedule(request)


class Schedules:
    """Recurring runs of a job: `await stackshift.schedules.create("nightly", job=..., cron=...)`.

    Exactly one run per tick whatever the number of workers; ticks follow the Redis server
    clock and are DST-correct in the schedule's IANA time zone.
    """

    def __init__(self, ns: Namespace, handle: Callable[[str], RunHandle]) -> None:
        self._ns = ns
        self._handle = handle

    async def create(
        self,
        name: str,
        *,
        job: str,
        cron: str | None = None,
        every: Duration | None = None,
        payload: Any = None,
        timezone: str = "UTC",
        overlap: str = "allow",
        catchup: str = "latest",
        jitter: Duration = 0,
        queue_name: str | None = None,
    ) -> ScheduleInfo:
        """Create a schedule, or update the one with this name (upsert). Keeping its cadence
        keeps its next tick; a new cadence fires at its first tick after now. Bad input:
        InvalidArgumentError naming the argument, nothing written."""
        await upsert(
            self._ns,
            name,
            job=job,
            cron=cron,
            every=every,
            payload=payload,
            timezone=timezone,
            overlap=overlap,
            catchup=catchup,
            jitter=jitter,
            queue_name=queue_name,
            origin="api",
        )
        info = await self.get(name)
        assert info is not None
        return info

    async def pause(self, name: str) -> bool:
        """Keep the schedule but fire nothing until resumed; False when there is none."""
        return await self._ns.scripts.control_schedule(check_name("schedule", name), "pause") > 0

    async def resume(self, name: str) -> bool:
        """Fire again from the first tick after now (ticks missed while paused are not
        fired); False when there is no such schedule."""
        ns, key = self._ns, self._ns.keys.schedule(check_name("schedule", name))
        for _ in range(5):  # a concurrent upsert changes rev: plan again
            h = await ns.redis.hgetall(key)
            if not h:
                return False
            if b"paused" not in h:
                return True
            next_ms = _cadence(h).next_after(await server_ms(ns))
            done = await ns.scripts.control_schedule(name, "resume", next_ms, _s(h, "rev"))
            if done >= 0:
                return done > 0
        return False

    async def trigger(self, name: str) -> RunHandle:
        """Start a run of the schedule now (overlap not applied); its ticks are unchanged.
        ScheduleNotFoundError when there is no such schedule."""
        ns = self._ns
        check_name("schedule", name)
        if ns.partitions > 1:  # the run on a partition, then the schedule (schedule_parts.py)
            made = await trigger_parts(ns, name, await server_ms(ns))
            if made is None:
                raise ScheduleNotFoundError(f"no schedule {name!r}")
            return self._handle(made)
        run_id = new_run_id()
        if not await ns.scripts.trigger_schedule(name, run_id):
            raise ScheduleNotFoundError(f"no schedule {name!r}")
        return self._handle(run_id)

    async def delete(self, name: str) -> bool:
        """Delete the schedule (runs it started are kept); False when there was none."""
        return await self._ns.scripts.control_schedule(check_name("schedule", name), "delete") > 0

    async def get(self, name: str) -> ScheduleInfo | None:
        """The schedule, or None."""
        h = await self._ns.redis.hgetall(self._ns.keys.schedule(check_name("schedule", name)))
        return self._info(h) if h else None

    async def list(self) -> list[ScheduleInfo]:
        """Every schedule of the namespace, by name."""
        ns = self._ns
        raw: list[bytes] = await ns.redis.zrange(ns.keys.schedules(), 0, -1)
        names = sorted(n.decode() for n in raw)
        out: list[ScheduleInfo] = []
        for lo in range(0, len(names), 500):
            async with ns.redis.pipeline(transaction=False) as pipe:
                for n in names[lo : lo + 500]:
                    pipe.hgetall(ns.keys.schedule(n))
                hashes = await pipe.execute()
            out += [self._info(h) for h in hashes if h]
        return out

    def _info(self, h: dict[bytes, bytes]) -> ScheduleInfo:
        cadence = _cadence(h)
        paused = b"paused" in h
        return ScheduleInfo(
            name=_s(h, "name"),
            job=_s(h, "job"),
            queue=_s(h, "queue"),
            cron=cadence.cron,
            every=timedelta(milliseconds=cadence.every_ms) if cadence.every_ms else None,
            timezone=cadence.timezone,
            payload=self._ns.serializer.loads(h[b"payload"]) if b"payload" in h else None,
            paused=paused,
            overlap=_s(h, "overlap", "allow"),
            catchup=_s(h, "catchup", "latest"),
            jitter=timedelta(milliseconds=int(_s(h, "jitter", "0") or 0)),
            next_fire_at=None if paused else from_ms(h.get(b"next")),
            last_run_id=_s(h, "last_run") or None,
        )


class ScheduleDuty:
    """A worker's schedule duty: fire due ticks; `poll()` says when to look again."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self._next_check = 0.0
        self._warned: set[tuple[str, str]] = set()

    async def sync_jobs(self) -> None:
        """At worker start: upsert the schedule of each registered job with `cron=` (named
        after the job) and delete the decorator schedule of a registered job without one."""
        ns = self.ns
        jobs = list(ns.registry.jobs.values())
        for j in jobs:
            if j.cron is not None:
                await upsert(
                    ns,
                    j.name,
                    job=j.name,
                    cron=j.cron,
                    timezone=j.timezone or "UTC",
                    queue_name=j.queue,
                    origin="job",
                )
        plain = [j.name for j in jobs if j.cron is None]
        if not plain:
            return
        async with ns.redis.pipeline(transaction=False) as pipe:
            for n in plain:
                pipe.hget(ns.keys.schedule(n), "origin")
            origins = await pipe.execute()
        for n, origin in zip(plain, origins, strict=True):
            if origin == b"job":
                await ns.scripts.control_schedule(n, "delete")
                log.info("schedule %r deleted: job %r no longer declares cron=", n, n)

    def look_now(self) -> None:
        """Make the next `poll()` look for due schedules whatever its timer says (a TestEnv
        calls this after moving its clock)."""
        self._next_check = 0.0

    async def poll(self) -> float:
        """Fire the due schedules if it is time to look; seconds until the next look."""
        left = self._next_check - time.monotonic()
        if left > 0:
            return left
        wait_ms = -1
        for _ in range(MAX_BATCHES):
            now_ms, wait_ms, due = await self.ns.scripts.due_schedules(BATCH)
            await asyncio.gather(*(self.fire(d, now_ms) for d in due))
            if len(due) < BATCH:
                break
        wait = POLL_S if wait_ms < 0 else min(POLL_S, wait_ms / 1000)
        self._next_check = time.monotonic() + wait
        return wait

    async def _plan(self, d: DueSchedule) -> str:
        """The flow-control plan of the schedule's runs under its job's rules (published,
        else local), '' for a job without rules; one HGET of the payload when it has some."""
        ns = self.ns
        rules = ns.definitions.rules(d.job)
        if rules is None or not (rules.flow or rules.priority):
            return ""
        raw = await ns.redis.hget(ns.keys.schedule(d.name), "payload")
        return self._plan_of(d, raw)

    def _plan_of(self, d: DueSchedule, raw: bytes | None) -> str:
        """The plan of the schedule's runs for its stored payload `raw` (see `_plan`)."""
        ns = self.ns
        rules = ns.definitions.rules(d.job)
        if rules is None or not (rules.flow or rules.priority):
            return ""
        try:
            payload = ns.serializer.loads(raw) if raw is not None else None
            return rules.plan(payload, match_key, rules.priority)
        except Exception as exc:  # a payload the rules cannot key: the tick runs without
            if (d.name, "plan") not in self._warned:
                self._warned.add((d.name, "plan"))
                log.error("schedule %r: job %r's rules do not apply: %s", d.name, d.job, exc)
            return ""

    async def fire(self, d: DueSchedule, now_ms: int) -> list[str] | None:
        """Fire one due schedule's ticks; the created run ids, or None when another worker
        won (or the schedule changed meanwhile)."""
        ns = self.ns
        try:
            cadence = Cadence(d.cron or None, d.every_ms or None, d.timezone)
            ticks, new_next = plan(cadence, d.catchup, d.next_ms, now_ms)
        except Exception as exc:  # a stored definition this process cannot read
            if (d.name, d.rev) not in self._warned:
                self._warned.add((d.name, d.rev))
                log.error("schedule %r cannot be planned (%s); fix it with create()", d.name, exc)
            return None
        if ns.partitions > 1:  # runs on partitions: two steps (schedule_parts.py)
            await ns.definitions.load()
            jitters = [(t, jitter_ms(d.name, t, d.jitter_ms)) for t in ticks]
            reply = await fire_parts(ns, d, jitters, new_next, lambda raw: self._plan_of(d, raw))
            self._log(d, len(ticks), reply)
            return None if reply is None else reply[0]
        plan_ = [(t, new_run_id(), jitter_ms(d.name, t, d.jitter_ms)) for t in ticks]
        for tries in range(STALE_TRIES):
            rev = await ns.definitions.load(force=tries > 0)
            request = FireScheduleRequest(
                due=d,
                next_ms=new_next,
                ticks=plan_,
                retention_ms=ns.settings.retention_ms,
                rev=rev,
                plan=await self._plan(d),
            )
            try:
                reply = await ns.scripts.fire_schedule(request)
                break
            except StaleDefinitionsError:
                continue
        else:
            return None
        self._log(d, len(ticks), reply)
        return None if reply is None else reply[0]

    @staticmethod
    def _log(d: DueSchedule, ticks: int, reply: tuple[list[str], int] | None) -> None:
        if reply is None:
            return
        created, skipped = reply
        if ticks > 1 or skipped or not ticks:
            log.info(
                "schedule %r: %d due ticks, %d runs created, %d skipped (overlap)",
                d.name,
                ticks,
                len(created),
                skipped,
            )
