"""The only door to Lua: one typed method per script in lua/, typed replies, one error map.

redis-py's `Script` does SHA caching, EVALSHA and reload on NOSCRIPT: no cache of our own.
Every call passes the namespace prefix in ARGV where the script derives keys with `K`
(lua/README.md); all keys share the namespace hash tag, so each call is one slot.
Error replies (`CODE detail`) become stackshift errors here and nowhere else.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import RedisUnavailableError, from_redis_error
from .keys import GROUP, Keys
from .luasrc import script_names, source

CONNECTION_ERRORS = (ConnectionError, TimeoutError, RedisConnectionError, RedisTimeoutError)
P = ParamSpec("P")
R = TypeVar("R")


def unavailable(exc: BaseException) -> RedisUnavailableError:
    """A connection failure as the public error (the redis-py error is its cause)."""
    if isinstance(exc, RedisUnavailableError):
        return exc
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RedisUnavailableError(f"Redis unavailable: {text}")


def redis_call(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Decorate a public coroutine that talks to Redis: connection failures (refused,
    timed out, unknown host) raise RedisUnavailableError, a StackShiftError."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except RedisUnavailableError:
            raise
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc

    return wrapper


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_str(flat[i]): _str(flat[i + 1]) for i in range(0, len(flat), 2)}


# (run id, idempotency key | None, payload) or the same plus the flow-control plan JSON
NewRun = tuple[str, str | None, bytes] | tuple[str, str | None, bytes, str]
StartReply = tuple[str | None, bool, str | None]  # run id, deduplicated, skipped reason


@dataclass(frozen=True)
class ScriptCall:
    """One prepared script call (batched by the worker into one pipeline)."""

    script: str
    run_id: str
    keys: list[str]
    args: list[Any]


@dataclass(frozen=True)
class TakenRun:
    """A run leased by `take`: what the worker needs to execute one attempt."""

    run_id: str
    queue: str
    token: str
    attempt: int  # executions so far, this one included
    job: str
    payload: bytes
    event: bytes  # the triggering event (serialized) or b""
    steps: list[bytes]  # flat [name, record, ...]
    fails: int  # failed attempts so far
    resumed: bool  # the run waited and this attempt continues it
    fields: dict[str, str]  # fields stored by hooks at start (x:<name>)
    schedule: str = ""  # the schedule that started the run, or ""
    scheduled_at: int = 0  # its tick (epoch ms), or 0
    waited_ms: int = 0  # from ready to taken (server clock)
    resumed_by: str = ""  # event | timer | child_ok | child_failed when resumed


@dataclass(frozen=True)
class TakeReply:
    """Runs leased by one `take`, and the entries it could not lease: (run id, queue,
    outcome) with outcome 'poison' (delivered too often: failed), 'damaged' (an unusable
    field: failed with RunDataError) or 'missing' (no such run: dropped)."""

    taken: list[TakenRun]
    dropped: list[tuple[str, str, str]]


@dataclass(frozen=True)
class DueSchedule:
    """A schedule due now, as `due_schedules` reads it (what a worker plans ticks from)."""

    name: str
    next_ms: int
    rev: str
    job: str
    cron: str  # "" for an interval
    every_ms: int  # 0 for a cron
    timezone: str
    catchup: str
    jitter_ms: int


@dataclass(frozen=True)
class WaitReply:
    """A durable wait's outcome: parked ('waiting') or settled at once ('done', value)."""

    parked: bool
    value: bytes | None = None  # wait_event: the event; invoke: the step record
    child: str | None = None  # invoke: the child run id


@dataclass(frozen=True)
class QueueStats:
    """A queue's gauges (queue_stats): runs ready, scheduled, running and waiting."""

    queue: str
    ready: int
    scheduled: int
    running: int
    waiting: int


@dataclass(frozen=True)
class SendReply:
    """What `send_event` did."""

    duplicate: bool
    resumed: list[str]
    started: list[str]
    cancelled: list[str]  # runs cancelled by their CancelOn rules


class Scripts:
    """One method per Lua script. `redis` may be a Redis or RedisCluster client.
    `virtual_clock` (TestEnv only): the scripts read the time from `keys.clock()`."""

    def __init__(self, redis: Any, keys: Keys, *, virtual_clock: bool = False) -> None:
        self.redis = redis
        self.keys = keys
        clock_key = keys.clock() if virtual_clock else None
        self._sources = {n: source(n, clock_key) for n in script_names()}
        self._scripts = {n: redis.register_script(text) for n, text in self._sources.items()}

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script; error replies become stackshift errors."""
        script = self._scripts[name]
        try:
            try:
                return await script(keys=list(keys), args=list(args))
            except NoScriptError:  # lost again between redis-py's load and call (a restart)
                return await script(keys=list(keys), args=list(args))
        except ResponseError as exc:
            raise from_redis_error(exc) from exc
        except RedisUnavailableError:
            raise
        except CONNECTION_ERRORS as exc:
            raise unavailable(exc) from exc

    async def queue_call(
        self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> None:
        """Add one script call to a pipeline.

        A Redis pipeline loads missing scripts before it runs (redis-py). A RedisCluster
        pipeline refuses EVALSHA and could not reload a script after NOSCRIPT, so there
        the call is queued as EVAL with the script's text (the server caches it too).
        """
        if isinstance(pipe, Pipeline):
            await self._scripts[name](keys=list(keys), args=list(args), client=pipe)
        else:
            pipe.eval(self._sources[name], len(keys), *keys, *args)

    async def run_batch(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run prepared calls in one round trip; per call its reply or its exception.
        Connection errors propagate (the caller decides whether to retry)."""
        if len(calls) == 1:
            c = calls[0]
            try:
                return [await self.call(c.script, c.keys, c.args)]
            except CONNECTION_ERRORS:
                raise
            except Exception as exc:
                return [exc]
        async with self.redis.pipeline(transaction=False) as pipe:
            for c in calls:
                await self.queue_call(pipe, c.script, c.keys, c.args)
            try:
                results = await pipe.execute(raise_on_error=False)
            except RedisUnavailableError:
                raise
            except CONNECTION_ERRORS as exc:
                raise unavailable(exc) from exc
        return [from_redis_error(r) if isinstance(r, ResponseError) else r for r in results]

    # starting runs
    def start_call(
        self,
        job: str,
        queue: str,
        runs: Sequence[NewRun],
        *,
        delay_ms: int,
        at_ms: int,
        idem_ttl_ms: int,
        extra: dict[str, str] | None = None,
        retention_ms: int = 0,
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `start` for runs of (run_id, idempotency key or None, payload
        [, flow-control plan JSON])."""
        k = self.keys
        keys: list[str] = []
        fields = json.dumps(extra) if extra else ""
        args: list[Any] = [k.prefix, job, queue, delay_ms, at_ms, idem_ttl_ms, fields, len(runs),
                           retention_ms or 86_400_000]  # fmt: skip
        for run in runs:
            run_id, idem, payload = run[0], run[1], run[2]
            keys += [k.run(run_id), k.idem(job, idem) if idem is not None else k.run(run_id)]
            plan = run[3] if len(run) > 3 else ""
            args += [run_id, "1" if idem is not None else "0", payload, plan]
        return keys, args

    async def start(
        self,
        job: str,
        queue: str,
        runs: Sequence[NewRun],
        *,
        delay_ms: int,
        at_ms: int,
        idem_ttl_ms: int,
        extra: dict[str, str] | None = None,
        retention_ms: int = 0,
    ) -> list[tuple[str, bool]]:
        """Create runs and make them ready (or schedule them); (run_id, deduplicated) each.
        A start that flow control skipped gives ('', False): see `start_flow`."""
        return [(r[0] or "", r[1]) for r in await self.start_flow(
            job, queue, runs, delay_ms=delay_ms, at_ms=at_ms, idem_ttl_ms=idem_ttl_ms,
            extra=extra, retention_ms=retention_ms,
        )]  # fmt: skip

    async def start_flow(
        self,
        job: str,
        queue: str,
        runs: Sequence[NewRun],
        *,
        delay_ms: int,
        at_ms: int,
        idem_ttl_ms: int,
        extra: dict[str, str] | None = None,
        retention_ms: int = 0,
    ) -> list[StartReply]:
        """Create runs under their flow-control plans: (run_id | None, deduplicated,
        skipped reason | None) each."""
        keys, args = self.start_call(
            job, queue, runs, delay_ms=delay_ms, at_ms=at_ms, idem_ttl_ms=idem_ttl_ms,
            extra=extra, retention_ms=retention_ms,
        )  # fmt: skip
        reply = await self.call("start", keys, args)
        return [
            (_str(reply[i]) or None, bool(int(reply[i + 1])), _str(reply[i + 2]) or None)
            for i in range(0, len(reply), 3)
        ]

    # the take path and finishing
    async def take(
        self, queues: Sequence[tuple[str, int]], n: int, *, max_deliveries: int,
        retention_ms: int, taker: str = "direct",
    ) -> TakeReply:  # fmt: skip
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
                    run_id=_str(r[0]), token=_str(r[2]), attempt=int(r[3]), job=_str(r[4]),
                    payload=r[5], event=r[6], steps=list(r[7]), fails=int(r[8] or 0),
                    resumed=bool(r[9]), fields=_pairs(r[10]), schedule=_str(r[11]),
                    scheduled_at=int(r[12] or 0), waited_ms=int(r[13]),
                    resumed_by=_str(r[14]), queue=_str(r[15]),
                )
            )  # fmt: skip
        return TakeReply(taken, dropped)

    def complete_call(
        self, run_id: str, token: str, result: bytes, retention_ms: int
    ) -> ScriptCall:
        """A prepared `complete`."""
        args = [self.keys.prefix, run_id, token, result, retention_ms]
        return ScriptCall("complete", run_id, [self.keys.run(run_id)], args)

    def fail_call(
        self, run_id: str, token: str, error_json: str, outcome: str, delay_ms: int,
        retention_ms: int,
    ) -> ScriptCall:  # fmt: skip
        """A prepared `fail` (outcome: retry | failed | cancelled)."""
        args = [self.keys.prefix, run_id, token, error_json, outcome, delay_ms, retention_ms]
        return ScriptCall("fail", run_id, [self.keys.run(run_id)], args)

    def hand_back_call(
        self, run_id: str, token: str, delay_ms: int, limit_ms: int, retention_ms: int,
        error_json: str,
    ) -> ScriptCall:  # fmt: skip
        """A prepared `hand_back`: a run of a job this worker does not register goes back
        (scheduled after delay_ms), or fails once it was handed back for limit_ms."""
        args = [self.keys.prefix, run_id, token, delay_ms, limit_ms, retention_ms, error_json]
        return ScriptCall("hand_back", run_id, [self.keys.run(run_id)], args)

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
        checked, repaired, nxt = await self.call("reconcile", [k.idx_status("queued")], args)
        return int(checked), int(repaired), int(nxt)

    async def trim(
        self, indexes: Sequence[tuple[str, str]], retention_ms: int, limit: int,
        notify_keep_ms: int,
    ) -> int:  # fmt: skip
        """Drop expired finished-run index entries (bounded per index) from each (time
        index, id-ordered index) pair; entries removed."""
        pairs = [key for pair in indexes for key in pair]
        keys = [self.keys.done(), self.keys.control(), *pairs]
        return int(await self.call("trim", keys, [retention_ms, limit, notify_keep_ms]))

    async def drop_consumer(self, queue: str, consumer: str) -> bool:
        """Delete a consumer of the queue's group if nothing is pending for it."""
        return bool(await self.call("drop_consumer", [self.keys.stream(queue)], [GROUP, consumer]))

    # the shared registry (workers' heartbeats)
    async def register(
        self, ttl_ms: int, jobs: dict[str, str], triggers: Sequence[tuple[str, str, str]],
        queues: Sequence[str],
    ) -> int:  # fmt: skip
        """Refresh a live worker's job map, triggers (event, job, queue) and consumed
        queues for `ttl_ms`; drop entries no live worker refreshed. Returns how many."""
        k = self.keys
        keys = [k.owners(), k.jobs(), k.qlive()] + [k.triggers(e) for e, _, _ in triggers]
        args = [k.prefix, ttl_ms, json.dumps(jobs),
                json.dumps([list(t) for t in triggers]), json.dumps(list(queues))]  # fmt: skip
        return int(await self.call("register", keys, args))

    async def unregister_job(self, job: str) -> int:
        """Remove `job` from the job map and every trigger; the number of entries removed."""
        k = self.keys
        return int(await self.call("unregister_job", [k.owners(), k.jobs()], [k.prefix, job]))

    # steps and durable waits (fenced by the lease token)
    async def record_step(
        self, run_id: str, token: str, name: str, record: bytes, kind: str
    ) -> bool:
        """Store a step record; True when a cancel was requested for the run."""
        reply = await self.call(
            "record_step", [self.keys.run(run_id)], [run_id, token, name, record, kind]
        )
        return bool(reply)

    async def progress(self, run_id: str, token: str, value: bytes) -> None:
        """Record a running run's progress (LeaseLostError when no longer held)."""
        await self.call("progress", [self.keys.run(run_id)], [run_id, token, value])

    async def sleep(
        self, run_id: str, token: str, step: str, rel_ms: int, until_ms: int, record: bytes
    ) -> bool:
        """Park the run until a time; False when already due (step recorded, go on)."""
        k = self.keys
        args = [k.prefix, run_id, token, step, rel_ms, until_ms, record]
        return _str(await self.call("suspend", [k.run(run_id)], args)) == "waiting"

    async def wait_event(
        self, run_id: str, token: str, step: str, event: str, shape: str, values_key: str,
        timeout_ms: int, lookback_ms: int, timed_out_record: bytes, received_prefix: bytes,
    ) -> WaitReply:  # fmt: skip
        """Match a recent event or park the run until one arrives (or the timeout)."""
        k = self.keys
        keys = [
            k.run(run_id), k.event_log(event), k.event_data(event), k.event_shapes(event),
            k.event_waiters(event, shape, values_key),
        ]  # fmt: skip
        args = [
            k.prefix, run_id, token, step, event, shape, values_key, timeout_ms, lookback_ms,
            timed_out_record, received_prefix,
        ]  # fmt: skip
        reply = await self.call("wait_event", keys, args)
        return WaitReply(parked=True) if reply[0] == b"waiting" else WaitReply(False, reply[1])

    async def invoke(
        self, run_id: str, token: str, step: str, job: str, queue: str, child_id: str,
        payload: bytes, timeout_ms: int, idem_ttl_ms: int, records: tuple[bytes, bytes, bytes],
        fields: dict[str, str] | None = None,
    ) -> WaitReply:  # fmt: skip
        """Start a child run once per (parent, step) and park the parent until it ends.
        records: (timed-out record, completed-record prefix, failed-record prefix);
        fields: hook fields {"x:<name>": value} stored on the child."""
        k = self.keys
        idem = k.idem(job, f"invoke:{run_id}:{step}")
        args = [k.prefix, run_id, token, step, job, queue, child_id, payload, timeout_ms,
                idem_ttl_ms, *records, json.dumps(fields) if fields else ""]  # fmt: skip
        reply = await self.call("invoke", [k.run(run_id), idem], args)
        child = _str(reply[1])
        if reply[0] == b"waiting":
            return WaitReply(parked=True, child=child)
        return WaitReply(parked=False, value=reply[2], child=child)

    # control
    async def cancel(self, run_id: str, reason: str, retention_ms: int) -> tuple[str, bool] | None:
        """Cancel a run: (status afterwards, whether this call changed it), None if unknown."""
        k = self.keys
        reply = await self.call("cancel", [k.run(run_id)], [k.prefix, run_id, reason, retention_ms])
        return (_str(reply[0]), bool(int(reply[1]))) if reply else None

    async def retry(self, run_id: str) -> bool:
        """Make a failed or cancelled run ready again; False when unknown.
        InvalidRunStateError when it is neither."""
        k = self.keys
        return bool(await self.call("retry", [k.run(run_id)], [k.prefix, run_id]))

    async def bulk(
        self, index: str, action: str, status: str, job: str, created_ms: tuple[int, int],
        cursor: tuple[str, str, str], limit: int, reason: str, retention_ms: int,
        budget_us: int,
    ) -> tuple[int, tuple[str, str] | None, str]:  # fmt: skip
        """One batch of cancel_runs/retry_runs over the status index `index`: at most
        `limit` runs, stopping early after `budget_us` of server time. created_ms: (after,
        before), -1 for none; cursor: (score, run id, upto), "" to begin and for upto
        "now". Returns (runs changed, the next (score, run id) or None when the pass is
        over, upto)."""
        args = [self.keys.prefix, action, status, job, created_ms[0], created_ms[1], *cursor,
                limit, reason, retention_ms, budget_us]  # fmt: skip
        changed, score, last, upto = await self.call("bulk", [index], args)
        nxt = (_str(score), _str(last)) if _str(score) else None
        return int(changed), nxt, _str(upto)

    async def replay(self, run_id: str, new_id: str, from_step: str, fields: dict[str, str]) -> int:
        """Start `new_id` as a replay of `run_id`; the number of step records copied (-1:
        it existed already). RunNotFoundError, InvalidArgumentError (unknown step)."""
        k = self.keys
        args = [k.prefix, run_id, new_id, from_step, json.dumps(fields) if fields else ""]
        reply = await self.call("replay", [k.run(run_id), k.run(new_id)], args)
        return int(reply[1])

    async def pause_queue(self, queue: str) -> bool:
        """Pause a queue; False when it was paused already."""
        k = self.keys
        return bool(await self.call("pause_queue", [k.queue_conf(queue), k.stream(queue)], []))

    async def resume_queue(self, queue: str, max_tickets: int = 200) -> bool:
        """Resume a paused queue and wake its workers; False when it was not paused."""
        k = self.keys
        keys, args = [k.queue_conf(queue), k.ring(queue)], [k.prefix, queue, max_tickets]
        return bool(await self.call("resume_queue", keys, args))

    async def watch(self, run_id: str) -> tuple[str, bytes | None, bytes | None] | None:
        """Mark a run as awaited; its (status, result, error) or None when unknown."""
        reply = await self.call("watch", [self.keys.run(run_id)], [])
        return (_str(reply[0]), reply[1], reply[2]) if reply else None

    # events
    async def send_event(
        self, name: str, event_id: str, encoded: bytes, flat_json: str, payload: bytes,
        dedupe_ms: int, log_ms: int, local_triggers: dict[str, str], call_token: str,
        fields: dict[str, str] | None = None, retention_ms: int = 0,
        plans: dict[str, str] | None = None,
    ) -> SendReply:  # fmt: skip
        """Record an event once; resume matching waiters; start triggered jobs (with the
        hook `fields`, {"x:<name>": value}, stored on each started run, and `plans`: the
        flow-control plan JSON of local triggered jobs, see flow.py); cancel runs whose
        CancelOn rules match."""
        k = self.keys
        keys = [k.event_seen(event_id), k.event_log(name), k.event_data(name),
                k.event_shapes(name), k.triggers(name), k.event_names()]  # fmt: skip
        args = [k.prefix, name, event_id, encoded, flat_json, payload, dedupe_ms, log_ms,
                json.dumps(local_triggers), call_token,
                json.dumps(fields) if fields else "", retention_ms or 86_400_000,
                json.dumps(plans or {})]  # fmt: skip
        duplicate, resumed, started, cancelled = await self.call("send_event", keys, args)
        return SendReply(
            bool(duplicate), [_str(r) for r in resumed], [_str(r) for r in started],
            [_str(r) for r in cancelled],
        )  # fmt: skip

    # metrics
    async def queue_stats(self, queues: Sequence[str]) -> tuple[int, list[QueueStats]]:
        """(live workers, per queue its gauges): `queues` plus those of the published
        job map, in one call."""
        k = self.keys
        reply = await self.call("queue_stats", [k.jobs(), k.workers()], [k.prefix, *queues])
        stats = [QueueStats(_str(q[0]), int(q[1]), int(q[2]), int(q[3]), int(q[4]))
                 for q in reply[1:]]  # fmt: skip
        return int(reply[0]), stats

    # state
    async def state_incr(self, name: str, amount: int, ttl_ms: int) -> int:
        """Add to a counter (TTL only on creation). InvalidArgumentError if not an int."""
        return int(await self.call("state_incr", [self.keys.state(name)], [amount, ttl_ms, name]))

    async def lock_extend(self, name: str, token: str, ttl_ms: int) -> bool:
        """Reset a lock's TTL while it holds `token`."""
        return bool(await self.call("lock_extend", [self.keys.lock(name)], [token, ttl_ms]))

    async def lock_release(self, name: str, token: str) -> bool:
        """Delete a lock while it holds `token`."""
        return bool(await self.call("lock_release", [self.keys.lock(name)], [token]))

    # schedules
    async def upsert_schedule(
        self, name: str, job: str, queue: str, payload: bytes, cron: str, every_ms: int,
        timezone: str, signature: str, overlap: str, catchup: str, jitter_ms: int,
        origin: str, next_ms: int,
    ) -> tuple[bool, int, bool]:  # fmt: skip
        """Create or update a schedule: (created, next fire ms, paused)."""
        k = self.keys
        args = [name, job, queue, payload, cron, every_ms, timezone, signature, overlap,
                catchup, jitter_ms, origin, next_ms]  # fmt: skip
        r = await self.call("upsert_schedule", [k.schedule(name), k.schedules()], args)
        return bool(r[0]), int(r[1]), bool(r[2])

    async def due_schedules(self, limit: int) -> tuple[int, int, list[DueSchedule]]:
        """(server now ms, ms until the next later schedule or -1, schedules due now)."""
        k = self.keys
        r = await self.call("due_schedules", [k.schedules()], [k.prefix, limit])
        due: list[DueSchedule] = []
        for i in range(2, len(r), 9):
            f = [_str(v) if v else "" for v in r[i : i + 9]]
            due.append(DueSchedule(f[0], int(f[1]), f[2], f[3], f[4], int(f[5] or 0),
                                   f[6] or "UTC", f[7] or "latest", int(f[8] or 0)))  # fmt: skip
        return int(r[0]), int(r[1]), due

    async def fire_schedule(
        self, due: DueSchedule, new_next_ms: int, ticks: Sequence[tuple[int, str, int]],
        idem_ttl_ms: int, retention_ms: int,
    ) -> tuple[list[str], int] | None:  # fmt: skip
        """Fire ticks (tick ms, run id, jitter ms) and advance to `new_next_ms`, if `due` is
        still current: (created run ids, ticks skipped by overlap), or None (stale)."""
        k = self.keys
        keys = [k.schedule(due.name), k.schedules()]
        args: list[Any] = [k.prefix, due.name, due.next_ms, due.rev, new_next_ms, idem_ttl_ms,
                           retention_ms, len(ticks)]  # fmt: skip
        for tick, run_id, jitter in ticks:
            keys.append(k.idem(due.job, f"schedule:{due.name}:{tick}"))
            args += [tick, run_id, jitter]
        r = await self.call("fire_schedule", keys, args)
        if r[0] != b"fired":
            return None
        return [_str(i) for i in r[1]], int(r[2])

    async def trigger_schedule(self, name: str, run_id: str) -> bool:
        """Start a run of the schedule now; False when there is no such schedule."""
        k = self.keys
        return bool(await self.call("trigger_schedule", [k.schedule(name)],
                                    [k.prefix, name, run_id]))  # fmt: skip

    async def control_schedule(self, name: str, op: str, next_ms: int = 0, rev: str = "") -> int:
        """pause | resume | delete: 1 done, 0 no such schedule, -1 changed since `rev`."""
        k = self.keys
        args = [name, op, next_ms, rev]
        return int(await self.call("control_schedule", [k.schedule(name), k.schedules()], args))
