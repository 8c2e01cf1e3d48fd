"""Schedules with partitions (P > 1): firing and triggering.

A schedule lives on the namespace's tag; its runs live on partitions. No script can touch
both (one slot per call on Redis Cluster), so a fire is two steps, in an order that loses
and doubles nothing:

1. each due tick's run is created on its partition by the ordinary `start` script, under a
   run id derived from the schedule and the tick (`tick_run_id`) on a partition routed by
   them (or by the job's flow-control key). A second fire of the same tick, by another
   worker or after a crash before step 2, computes the same id and `start` finds the run
   and creates nothing. No per-tick key is written (lua/README.md: schedule ticks leave no
   key): the run itself is the guard.
2. `advance_schedule` compare-and-sets the schedule (the next fire time and definition
   revision it was planned from) and records the next fire time, the newest tick handled
   and the last run. A crash before it makes the next poll redo step 1 (deduplicated by
   the run ids) and then step 2.

Overlap reads the last run's status on its partition before step 1; `cancel_other`
cancels it there. A tick whose run already exists counts as fired whatever the overlap
(the earlier fire judged it). With one partition none of this runs: `fire_schedule` and
`trigger_schedule` do it all in one script (schedules.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

from .._core.namespace import Namespace
from .._core.partitions import id_suffix
from .._core.routing import SEP, pick_partition
from .._core.scripts import DueSchedule, StartReply, StartRequest, fields_of
from ..errors import StaleDefinitionsError

log = logging.getLogger("stackshift.schedules")
STALE_TRIES = 5  # see starting.py
FINAL = (b"completed", b"failed", b"cancelled")
_FIELDS = ["next", "rev", "paused", "job", "queue", "payload", "overlap", "last_run", "last_tick"]


def tick_run_id(name: str, tick: int, part: int) -> str:
    """The run id of a schedule's tick on partition `part`: the tick's ms (ids still sort by
    time), then 13 hex digits of a hash of the schedule's name and the tick."""
    digest = hashlib.sha1(f"{name}{SEP}{tick}".encode()).hexdigest()[:13]
    return f"{tick:011x}{digest}{id_suffix(part)}"


def tick_partition(
    ns: Namespace, job: str, name: str, tick: int, raw: bytes | None
) -> tuple[int, bool]:
    """The partition of a tick's run, the same in every process: its flow-control key's
    (the rules' state is there), else one routed by the schedule and the tick; and False
    when the job's rules cannot key the payload (the tick then runs without them)."""
    rules = ns.definitions.rules(job)
    flow = rules.flow if rules is not None else None
    key = f"schedule:{name}:{tick}"
    if flow:
        try:
            payload = ns.serializer.loads(raw) if raw is not None else None
            return pick_partition(ns.partitions, job, flow, payload, None, key), True
        except Exception:  # logged by the plan (schedules.py)
            pass
    return pick_partition(ns.partitions, job, None, None, None, key), not flow


async def start_on_partition(
    ns: Namespace,
    job: str,
    queue: str,
    run_id: str,
    payload: bytes,
    plan: str,
    at_ms: int,
    fields: dict[str, str],
) -> StartReply:
    """Create one run (`run_id` names its partition) through `start`, due at `at_ms` (0:
    now), pinned to the job's highest live version; the definitions reloaded on STALE."""
    for tries in range(STALE_TRIES):
        rev = await ns.definitions.load(force=tries > 0)
        request = StartRequest(
            job=job,
            queue=queue,
            idem_ttl_ms=ns.settings.idempotency_ttl_ms,
            at_ms=at_ms,
            fields=fields_of(fields),
            retention_ms=ns.settings.retention_ms,
            rev=rev,
        )
        try:
            [reply] = await ns.scripts_of(run_id).start(request, [(run_id, None, payload, plan)])
            return reply
        except StaleDefinitionsError:
            continue
    raise StaleDefinitionsError(f"job {job!r}: definitions kept changing during a schedule's start")


async def _busy(ns: Namespace, run_id: str) -> bool:
    """True while the run is unfinished (a missing run counts as finished)."""
    status = await ns.redis.hget(ns.keys_of(run_id).run(run_id), "status")
    return status is not None and status not in FINAL


def _int(v: bytes | None) -> int:
    return int(v) if v else 0


async def fire_parts(
    ns: Namespace,
    d: DueSchedule,
    ticks: Sequence[tuple[int, int]],
    next_ms: int,
    plan_of: Callable[[bytes | None], str],
) -> tuple[list[str], int] | None:
    """Fire `ticks` ((tick ms, jitter ms)) of `d` and advance it to `next_ms` (module
    docstring): (created run ids, ticks skipped), or None when `d` is stale (another worker
    won, the schedule changed, is paused or gone)."""
    raw = await ns.redis.hmget(ns.keys.schedule(d.name), _FIELDS)
    nxt, rev, paused, job_b, queue_b, payload, overlap_b, last_b, last_tick = raw
    if rev is None or _int(nxt) != d.next_ms or rev.decode() != d.rev or paused is not None:
        return None
    assert job_b is not None and queue_b is not None and payload is not None
    job, queue = job_b.decode(), queue_b.decode()
    overlap = overlap_b.decode() if overlap_b else "allow"
    last = last_b.decode() if last_b else None
    handled, plan = _int(last_tick), plan_of(payload)
    created: list[str] = []
    skipped = 0
    for tick, jitter in ticks:
        if tick <= handled:  # handled already (a server clock set back)
            continue
        handled = tick
        part, keyed = tick_partition(ns, job, d.name, tick, payload)
        run_id = tick_run_id(d.name, tick, part)
        busy = last is not None and overlap != "allow" and await _busy(ns, last)
        if busy and await ns.redis.exists(ns.keys_of(run_id).run(run_id)):
            busy = False  # an earlier fire made this tick's run (and judged the overlap)
        if busy and overlap == "skip":
            skipped += 1
            continue
        if busy and last is not None:  # cancel_other
            reason = f"cancelled by schedule {d.name}: a newer tick started"
            await ns.scripts_of(last).cancel(last, reason, ns.settings.retention_ms)
        fields = {"schedule": d.name, "scheduled_at": str(tick)}
        try:
            rid, merged, _ = await start_on_partition(
                ns, job, queue, run_id, payload, plan if keyed else "", tick + jitter, fields
            )
        except StaleDefinitionsError:
            return None
        if rid is None:  # flow control skipped it (rate limit, singleton)
            skipped += 1
            continue
        if not merged:
            created.append(rid)
        last = rid
    if not await ns.scripts.advance_schedule(d.name, last or "", d, next_ms, handled):
        return None
    return created, skipped


async def trigger_parts(ns: Namespace, name: str, now_ms: int) -> str | None:
    """Start a run of schedule `name` now (overlap and flow control not applied) on a
    random partition, then record it as the schedule's last run; its id, or None when
    there is no such schedule."""
    job_b, queue_b, payload = await ns.redis.hmget(
        ns.keys.schedule(name), ["job", "queue", "payload"]
    )
    if job_b is None or queue_b is None or payload is None:
        return None
    job = job_b.decode()
    run_id = ns.new_run_id(pick_partition(ns.partitions, job, None, None))
    fields = {"schedule": name, "scheduled_at": str(now_ms)}
    await start_on_partition(ns, job, queue_b.decode(), run_id, payload, "", 0, fields)
    await ns.scripts.advance_schedule(name, run_id)
    return run_id
