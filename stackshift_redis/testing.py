"""Testing your own jobs: `TestEnv` runs an app in-process on fakeredis with a virtual
clock, and `fake_app()` builds an app on fakeredis (needs the `[testing]` extra).

`TestEnv` is not a second engine. It points the app's namespace at a private fakeredis
server whose scripts are the same Lua files, rendered with the virtual `now_ms`
(luasrc.source with a clock key), and executes runs with the worker's own parts: the
take path (dispatch.Dispatcher), attempts (executor.Executor) and the background duties
(upkeep.Upkeep: promote due runs, reclaim expired leases, and whatever duty lands
there later, such as schedules). Time stands still inside a TestEnv until `advance()`
moves it; the same virtual time reaches the scripts (the clock key) and the Python side
(clock.use), so sleeps, event timeouts, delays and retries with backoff become due
exactly when they would.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from ._client.state import State
from ._core import clock
from ._core.keys import check_name
from ._core.records import Duration, epoch_ms, error_json, millis
from ._core.scripts import FailRequest, ScriptCall, TakenRun
from ._worker.attempts import Executor
from ._worker.dispatch import Dispatcher
from ._worker.outage import Outage
from ._worker.registration import Registration
from ._worker.upkeep import Upkeep
from .app import StackShift
from .errors import InvalidArgumentError, ResultTimeout, StackShiftError

log = logging.getLogger("stackshift.testing")
SKIP_LIMIT_MS = 366 * 86_400_000  # how far result() skips virtual time, at most
_POLL_S = (0.005, 0.1)  # while attempts run: look for runs they made ready, backing off


def fake_redis(**kwargs: Any) -> Any:
    """A fakeredis asyncio client (needs `pip install 'stackshift-redis[testing]'`)."""
    try:
        import fakeredis
    except ImportError as exc:
        raise ImportError(
            "stackshift_redis.testing needs fakeredis: pip install 'stackshift-redis[testing]'"
        ) from exc

    return fakeredis.FakeAsyncRedis(**kwargs)


def fake_app(namespace: str = "test", **kwargs: Any) -> StackShift:
    """A StackShift app on a fresh in-memory fakeredis server."""
    return StackShift(redis=fake_redis(), namespace=namespace, **kwargs)


def _sha1hex(data: Any) -> bytes:
    raw = data if isinstance(data, bytes) else str(data).encode()
    return hashlib.sha1(raw).hexdigest().encode()


def _add_sha1hex(server: Any) -> None:
    """fakeredis (2.41) gives EVAL scripts no `redis.sha1hex`, which Redis has and event
    matching uses (lua/lib/values_key.lua): add it to the server's Lua runtime once that
    exists (after a first script call). Nothing happens on a fakeredis that has it."""
    runtime = getattr(server, "_lua_runtime", None)
    if runtime is None:
        return
    api = runtime.globals()[b"redis"]
    if api is not None and api[b"sha1hex"] is None:
        api[b"sha1hex"] = _sha1hex


def _finite(value: object) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive int, not {value!r}")
    return value


class TestEnv:
    """Run `app`'s jobs in-process, on in-memory fakeredis, with a clock you move.

    ```python
    async with TestEnv(stackshift) as env:
        run = await stackshift.start("checkout", {"order_id": "o_1"})
        await env.drain()                     # everything due now, until nothing is ready
        await env.advance(timedelta(days=1))  # sleeps, timeouts, delays, retries fire
        assert await run.status() == "completed"
    ```

    Inside the block the app talks to a private fakeredis server (the app's own Redis is
    untouched and is used again afterwards) and time stands still until `advance()`, or
    until `await run.result()`, which skips time to the run's end (`time_skipping=False`
    turns that off; see `settle`).
    Only jobs registered on `app` execute; `queues` defaults to every queue of them.
    Redis TTLs (retention, state `ttl=`, locks, idempotency and event dedupe windows)
    follow real time: the virtual clock moves what the scripts and runs see.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        app: StackShift,
        *,
        queues: Sequence[str] | None = None,
        start: datetime | None = None,
        concurrency: int = 100,
        max_attempts: int = 10_000,
        time_skipping: bool = True,
    ) -> None:
        if not isinstance(app, StackShift):
            raise InvalidArgumentError(f"app must be a StackShift app, not {app!r}")
        if start is not None and not isinstance(start, datetime):
            raise InvalidArgumentError(f"start must be a datetime, not {start!r}")
        self.app = app
        self.concurrency = _positive_int("concurrency", concurrency)
        self.max_attempts = _positive_int("max_attempts", max_attempts)
        if not isinstance(time_skipping, bool):
            raise InvalidArgumentError(f"time_skipping must be a bool, not {time_skipping!r}")
        self.time_skipping = time_skipping
        self._busy = 0  # drain/advance/settle calls under way (a result() inside one waits)
        ns = app._core
        if queues is None:  # the queues of its jobs, the configured ones and default
            used = {j.queue for j in ns.registry.jobs.values()}
            queues = sorted(used | set(ns.registry.queues) | {"default"})
        self.queues = [check_name("queue", q) for q in queues]
        if not self.queues:
            raise InvalidArgumentError("queues must name at least one queue")
        self._start_ms = epoch_ms(start) if start is not None else clock.now_ms()
        self._now_ms = self._start_ms
        self._previous: tuple[Any, str | None, bool] | None = None
        self._previous_clock: Callable[[], int] | None = None
        self._redis: Any = None
        self._dispatcher: Dispatcher | None = None
        self._executor: Executor | None = None
        self._upkeep: Upkeep | None = None

    # the clock
    @property
    def now(self) -> datetime:
        """The virtual time (an aware UTC datetime)."""
        return datetime.fromtimestamp(self._now_ms / 1000, UTC)

    def _clock_ns(self) -> int:
        return self._now_ms * 1_000_000

    async def _set_clock(self, ms: int) -> None:
        self._now_ms = ms
        for key in self._clock_keys():
            await self._redis.set(key, ms)

    def _clock_keys(self) -> list[str]:
        """The clock key of the namespace's tag and of each partition (one key with P = 1):
        every script reads the clock of the keys it is bound to."""
        ns = self.app._core
        return list(dict.fromkeys([ns.keys.clock(), *(k.clock() for k in ns.part_keys)]))

    # lifecycle
    async def __aenter__(self) -> TestEnv:
        if self._previous is not None:
            raise StackShiftError("this TestEnv is already open")
        import fakeredis  # the [testing] extra

        ns = self.app._core
        server = fakeredis.FakeServer()
        self._redis = fakeredis.FakeAsyncRedis(server=server)
        for key in self._clock_keys():
            await self._redis.set(key, self._now_ms)
        await self.app.close()  # the result reader and sync facade reconnect to fakeredis
        self._previous = ns.swap_client(self._redis, virtual_clock=True)
        self._previous_clock = clock.use(self._clock_ns)
        if self.time_skipping:
            ns.settle = self.settle
        consumer = f"testenv-{id(self):x}"
        registration = Registration(ns, consumer, self.queues)  # as a worker's (see run())
        conf = registration.conf
        self._dispatcher = Dispatcher(ns, self.queues, consumer, conf)
        self._executor = Executor(
            ns, State(ns), asyncio.get_running_loop(), finish=self._finish, conf=conf, resources={}
        )
        self._upkeep = Upkeep(
            ns,
            consumer,
            self.queues,
            held=lambda: [],
            poll_interval=0.0,
            conf=conf,
            on_heartbeat=registration.register,
            outage=Outage(ns),
        )
        try:
            await registration.setup()  # groups, job map, triggers, queue settings
            await self._upkeep.setup()
            await self._upkeep.next_due_ms()  # a script call: the Lua runtime exists now
            _add_sha1hex(server)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._previous is None:
            return
        try:
            await self.app.close()  # the result reader, which reads from fakeredis
        finally:
            redis, redis_url, virtual = self._previous
            self.app._core.settle = None
            self.app._core.swap_client(redis, redis_url=redis_url, virtual_clock=virtual)
            clock.use(self._previous_clock)
            self._previous = None
            await self._redis.aclose()

    def _parts(self) -> tuple[Dispatcher, Executor, Upkeep]:
        if self._dispatcher is None or self._executor is None or self._upkeep is None:
            raise StackShiftError("use TestEnv as `async with TestEnv(app) as env:`")
        if self._previous is None:
            raise StackShiftError("this TestEnv is closed")
        return self._dispatcher, self._executor, self._upkeep

    # executing
    async def drain(self) -> int:
        """Execute everything due now, in-process, until no run is ready and no attempt is
        running; returns the number of attempts executed. Time does not move."""
        self._busy += 1
        try:
            return await self._drain()
        finally:
            self._busy -= 1

    async def _drain(self) -> int:
        dispatcher, _, upkeep = self._parts()
        await upkeep.due_now()
        running: set[asyncio.Task[None]] = set()
        executed, poll = 0, _POLL_S[0]
        try:
            while True:
                free = self.concurrency - len(running)
                taken = await self._take(dispatcher, free) if free > 0 else []
                if not taken and not running:
                    await upkeep.tick()  # a retry due at once (RetryAfterError(0))
                    taken = await self._take(dispatcher, free)
                    if not taken:
                        return executed
                executed += len(taken)
                if executed > self.max_attempts:
                    raise StackShiftError(
                        f"drain executed more than {self.max_attempts} attempts: does a job "
                        "start or retry runs without end? (TestEnv(max_attempts=...))"
                    )
                running |= {asyncio.create_task(self._attempt(run, at)) for run, at in taken}
                poll = _POLL_S[0] if taken else min(poll * 2, _POLL_S[1])
                done, running = await asyncio.wait(
                    running, timeout=poll, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)

    async def advance(self, duration: Duration) -> int:
        """Move the clock forward by `duration` (seconds or a timedelta), stopping at each
        due time on the way (sleeps, event timeouts, delayed runs, retries) to drain, so
        that things fire in order; then drain at the new time. Returns attempts executed."""
        ms = millis(duration, "duration") if _finite(duration) else -1
        if ms < 0:
            raise InvalidArgumentError(f"duration must be finite, not {duration!r}")
        self._busy += 1
        try:
            return await self._advance(ms)
        finally:
            self._busy -= 1

    async def _advance(self, ms: int) -> int:
        _, _, upkeep = self._parts()
        target = self._now_ms + ms
        executed = await self.drain()
        for _ in range(self.max_attempts):
            wait = await upkeep.next_due_ms()
            if wait is None or self._now_ms + wait > target:
                break
            if wait > 0:
                await self._set_clock(self._now_ms + wait)
            executed += await self.drain()
        else:
            raise StackShiftError(f"advance stopped after {self.max_attempts} due times")
        await self._set_clock(target)
        return executed + await self.drain()

    async def settle(self, run_id: str) -> None:
        """Time skipping, as `await run.result()` uses it inside the block: drain, and
        while the run is not final move the clock to the next due time (sleeps, timeouts,
        delayed runs, retries) and drain again, up to SKIP_LIMIT of virtual time. A run
        that waits for what only the test can do (an event, a run it waits for that
        nothing starts) raises ResultTimeout at once, saying so. Called from inside a
        drain (a job awaiting another run's result), it does nothing: the drain runs it."""
        if self._busy or self._previous is None:
            return
        self._busy += 1
        try:
            await self._settle(run_id)
        finally:
            self._busy -= 1

    async def _settle(self, run_id: str) -> None:
        _, _, upkeep = self._parts()
        key = self.app._core.keys_of(run_id).run(run_id)
        deadline = self._now_ms + SKIP_LIMIT_MS
        for _ in range(self.max_attempts):
            await self._drain()
            raw = await self._redis.hget(key, "status")
            status = raw.decode() if raw is not None else None
            if status is None or status in ("completed", "failed", "cancelled"):
                return  # result() answers (or says the run is unknown)
            wait = await upkeep.next_due_ms()
            if wait is None or self._now_ms + wait > deadline:
                raise ResultTimeout(
                    f"run {run_id} is {status} and nothing is due in this TestEnv"
                    + (" within a year of virtual time" if wait is not None else "")
                    + ": it waits for something only the test does (send its event, "
                    "start what it waits for); do that first, or use env.drain()/advance()"
                )
            if wait > 0:
                await self._set_clock(self._now_ms + wait)
        raise StackShiftError(f"result() stopped after {self.max_attempts} due times")

    async def _take(self, dispatcher: Dispatcher, n: int) -> list[tuple[TakenRun, float]]:
        sent = time.monotonic()
        reply = await dispatcher.take(n)
        for run_id, queue, why in reply.dropped:  # poison, damaged or missing: as a worker
            log.error("run %s (queue %s) not taken: %s", run_id, queue, why)
        return [(run, sent) for run in reply.taken]

    async def _attempt(self, run: TakenRun, sent: float) -> None:
        """One attempt to its outcome, recorded as a worker records it."""
        _, executor, _ = self._parts()
        ns = self.app._core
        try:
            ex = executor.build(run, sent)
        except Exception as exc:  # its payload or event does not decode: it fails alone
            log.error(
                "run %s (%s): its stored payload does not decode: %s", run.run_id, run.job, exc
            )
            request = FailRequest(
                run_id=run.run_id,
                token=run.token,
                error_json=error_json(exc, type_name="PayloadError"),
                outcome="failed",
                retention_ms=ns.settings.retention_ms,
            )
            reply = await self._finish(ns.scripts_of(request.run_id).fail_call(request))
            if isinstance(reply, Exception):
                log.warning("recording the failure of run %s failed: %s", run.run_id, reply)
            return
        await executor.run(ex)  # records the outcome (through _finish)

    async def _finish(self, call: ScriptCall) -> object:
        """Record one outcome as a worker does, unbatched: its reply, or its exception."""
        try:
            [reply] = await self.app._core.scripts.run_batch([call])
        except Exception as exc:
            return exc
        return reply
