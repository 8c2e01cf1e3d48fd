"""Worker: takes ready runs of its queues, executes them, keeps their leases.

The fetch loop takes as many runs as it has free slots (one script call); when a take
comes back short it blocks on the queues' ticket streams. Background duties (upkeep.py)
promote due runs, renew leases, recover expired ones and heartbeat. The finish scripts
of one loop tick go in one pipeline (TickBatcher); an attempt's outcome is told to hooks
and the log once its finish answered (attempts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence

from redis.exceptions import ResponseError

from .._attempt.execution import Execution
from .._client.state import State
from .._core.batching import TickBatcher
from .._core.keys import check_name
from .._core.namespace import Namespace
from .._core.records import error_json
from .._core.scripts import CONNECTION_ERRORS, FailRequest, ScriptCall, TakenRun
from ..errors import InvalidArgumentError, LayoutError
from .attempts import Executor
from .dispatch import Dispatcher
from .outage import UNAVAILABLE, Outage, unless_set
from .registration import Registration, is_lost_group
from .startup_hooks import Lifecycle
from .upkeep import Upkeep
from .watchdog import LoopWatchdog

log = logging.getLogger("stackshift.worker")
HANDBACK_PAUSE_S = 0.5  # a worker that handed back a run it cannot execute waits this long
# before taking again, so the ticket of that run wakes a worker that has the job
_DROPPED = {
    "poison": "delivered too many times without finishing: failed as PoisonRunError",
    "damaged": "its stored record is damaged: failed as RunDataError (see its error)",
    "missing": "a ready entry names no run (foreign or expired): dropped",
}


async def _finish_task(task: asyncio.Task[None], wait: float) -> None:
    """Let a loop that watches a stop flag end by itself; cancel it if it does not."""
    done, _ = await asyncio.wait([task], timeout=wait)
    if not done:
        task.cancel()
        await asyncio.wait([task], timeout=2)
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.error("worker task %s failed: %r", task.get_name(), task.exception())


class Worker:
    """Executes runs of `queues` with at most `concurrency` attempts at once."""

    def __init__(
        self,
        ns: Namespace,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        *,
        grace: float = 30.0,
        block_ms: int = 1000,
        poll_interval: float = 0.2,
        lag_threshold: float = 1.0,
        handback_limit: float = 300.0,
    ) -> None:
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise InvalidArgumentError("concurrency must be a positive int")
        self.ns = ns
        names = list(queues) if queues else sorted({j.queue for j in ns.registry.jobs.values()})
        self.queues = [check_name("queue", q) for q in names or ["default"]]
        self.concurrency = concurrency
        self.handback_limit = handback_limit  # runs of jobs not registered here: see hand_back
        self.grace = grace
        self.block_ms = block_ms
        self.id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.running: dict[str, tuple[Execution, asyncio.Task[None]]] = {}
        self.registration = Registration(ns, self.id, self.queues)
        conf = self.registration.conf  # effective queue settings: local, else published
        self.dispatcher = Dispatcher(ns, self.queues, self.id, conf)
        self.outage = Outage(ns)
        self.upkeep = Upkeep(
            ns,
            self.id,
            self.queues,
            held=self._held,
            poll_interval=poll_interval,
            conf=conf,
            on_heartbeat=self._heartbeat,
            outage=self.outage,
            concurrency=concurrency,
            on_refused=self.refuse,
        )
        self.lifecycle = Lifecycle(ns)
        self.watchdog = LoopWatchdog(self._running_ids, lag_threshold)
        self.state = State(ns)
        # finish scripts sent in one loop tick go in one pipeline
        self._finishes: TickBatcher[None, ScriptCall, object] = TickBatcher(self._send)
        self._executor: Executor | None = None  # built in run(): it needs the running loop
        self._stopping = asyncio.Event()
        self._forced = False
        self._slot_freed = asyncio.Event()
        self._cut_off: list[tuple[str, str, str]] = []
        self._undecodable_tasks: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._burst = False
        self._done = asyncio.Event()
        self.refused: LayoutError | None = None
        """Set when the namespace turned out to have a newer layout: the worker stops."""

    @property
    def threads_busy(self) -> int:
        """Plain-function handlers still running in threads."""
        return self._executor.threads_busy if self._executor is not None else 0

    async def _heartbeat(self) -> int:
        """Each heartbeat: registrations, and the hand-back summary once a minute."""
        if self._executor is not None:
            self._executor.handbacks.flush()
        return await self.registration.register()

    def _held(self) -> list[tuple[Execution, asyncio.Task[None]]]:
        return list(self.running.values())

    def _running_ids(self) -> list[tuple[str, str]]:
        return [(ex.run_id, ex.job) for ex, _ in self.running.values()]

    # lifecycle
    async def run(self, burst: bool = False) -> None:
        """Process runs until stop() (or, with burst, until nothing is queued, running or due)."""
        self._loop = asyncio.get_running_loop()
        self._executor = Executor(
            self.ns,
            self.state,
            self._loop,
            finish=self._finish,
            conf=self.registration.conf,
            resources=self.lifecycle.resources,  # filled by the startup hooks
            handback_limit_ms=round(self.handback_limit * 1000),
        )
        self._burst = burst
        self._done.clear()
        try:
            await self._setup()
        except BaseException:
            self._done.set()
            raise
        if self._stopping.is_set():  # stopped while waiting for Redis
            await self.lifecycle.shutdown()
            self._done.set()
            return
        log.info(
            "worker %s: connected; queues %s, concurrency %d",
            self.id,
            self.queues,
            self.concurrency,
        )
        fetch = asyncio.create_task(self._fetch_loop(), name="stackshift-fetch")
        duties = asyncio.create_task(self.upkeep.loop(), name="stackshift-upkeep")
        watch = asyncio.create_task(self.watchdog.loop(self._done), name="stackshift-watchdog")
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            try:
                await _finish_task(fetch, self.block_ms / 1000 + 1)
                await self._drain()
                await self.dispatcher.permits.close()
                self.upkeep.stopped.set()
                await _finish_task(duties, 5)
                await self.upkeep.teardown(write=self.refused is None)
                await self.lifecycle.shutdown()
            finally:
                self._done.set()
                watch.cancel()
        if self.refused is not None:
            raise self.refused

    async def _setup(self) -> None:
        """Run the startup hooks (a failure stops the worker before it claims anything),
        then wait for Redis (with backoff) and publish what this worker registers."""
        await self.lifecycle.startup()
        while await self.outage.wait_until_reachable(self._stopping):
            try:
                await self.upkeep.check_server()
                self.ns.layout.worker = True  # its checks also read live workers' layouts
                await unless_set(self._stopping, self.ns.layout.ensure(fresh=True))  # or waits
                if self._stopping.is_set():
                    return
                await self.registration.setup()  # before the first heartbeat: ready when seen
                await self.upkeep.setup(check=False)
                return
            except UNAVAILABLE as exc:
                await self.outage.failed(exc)

    def refuse(self, exc: LayoutError) -> None:
        """The namespace has a newer layout (or is being migrated to one): stop at once
        and write nothing more; `run()` raises `exc` once stopped."""
        if self.refused is None:
            self.refused = exc
        self.request_stop(force=True)

    def request_stop(self, force: bool = False) -> None:
        """Ask the worker to stop (safe from a signal handler); `force` skips the grace period."""
        self._forced = self._forced or force
        self._stopping.set()
        if force:
            for _, task in list(self.running.values()):
                task.cancel()

    async def stop(self, force: bool = False) -> None:
        """Stop fetching, let running attempts finish within the grace period, then return."""
        self.request_stop(force)
        if self._loop is not None:
            await self._done.wait()

    async def _drain(self) -> None:
        if self.refused is not None:  # nothing may be written: leases expire by themselves
            tasks = [task for _, task in self.running.values()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            self._cut_off = []
            await self._finishes.flush()  # refused at the gate: resolves waiting attempts
            return
        tasks = [task for _, task in self.running.values()]
        if tasks and not self._forced:
            log.info("worker %s: waiting up to %.0fs for %d runs", self.id, self.grace, len(tasks))
            await asyncio.wait(tasks, timeout=self.grace)
        for _, task in list(self.running.values()):
            task.cancel()
        if self.running:
            await asyncio.wait([t for _, t in self.running.values()], timeout=5)
        cut_off = self._cut_off + [
            (ex.queue, ex.run_id, ex.token) for ex, _ in self.running.values()
        ]
        self._cut_off = []
        await self._hand_back(cut_off)
        await self._finishes.flush()

    async def _hand_back(self, cut_off: list[tuple[str, str, str]]) -> None:
        """Make attempts cut off by the stop ready now, instead of after their lease expires:
        expire our (token-checked) leases, then reclaim."""
        if cut_off:
            ids = " ".join(run_id for _, run_id, _ in cut_off[:50])
            more = " ..." if len(cut_off) > 50 else ""
            log.warning(
                "worker %s: handing back %d runs cut off by the stop: %s%s",
                self.id,
                len(cut_off),
                ids,
                more,
            )
        groups: dict[tuple[str, int], list[tuple[str, str]]] = {}
        for q, run_id, token in cut_off:  # per queue and partition
            groups.setdefault((q, self.ns.part_of(run_id)), []).append((run_id, token))
        for (queue, part), held in groups.items():
            scripts = self.ns.part_scripts(part)
            with contextlib.suppress(Exception):
                await scripts.renew(queue, held, -1)
                await scripts.reclaim(queue, self.ns.settings.retention_ms)

    # taking runs
    async def _fetch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._fetch_once()
                self.outage.ok("fetch")
            except asyncio.CancelledError:
                raise
            except UNAVAILABLE as exc:
                await self.outage.failed(exc, "fetch")
            except LayoutError as exc:
                self.refuse(exc)
            except Exception:
                log.exception("worker %s: fetch failed; retrying", self.id)
                await asyncio.sleep(1.0)

    def free_slots(self) -> int:
        """How many more attempts this worker may start now."""
        return self.concurrency - len(self.running)

    async def _fetch_once(self) -> None:
        free = self.free_slots()
        if free <= 0:
            self._slot_freed.clear()
            await self._slot_freed.wait()
            return
        if self._executor is not None:  # just handed a run back: let another worker wake
            pause = self._executor.handed_back_at + HANDBACK_PAUSE_S - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        sent = time.monotonic()
        reply = await self.dispatcher.take(free)
        for run_id, queue, why in reply.dropped:
            log.error(
                "run %s (queue %s): %s",
                run_id,
                queue,
                _DROPPED[why],
                extra={"run_id": run_id, "queue": queue},
            )
        for run in reply.taken:
            self._start(run, sent)
        if len(reply.taken) >= free or self._stopping.is_set():
            return  # more may be ready: take again as soon as slots are free
        try:
            woke = await self.dispatcher.wait(free, self.block_ms)
        except ResponseError as exc:
            if not is_lost_group(exc):
                raise
            await self.registration.recover(str(exc).split(" ", 1)[0])
            return
        if not woke and self._burst and not self.running and await self.upkeep.nothing_due():
            self._stopping.set()

    def _start(self, run: TakenRun, sent: float) -> None:
        assert self._executor is not None
        try:
            ex = self._executor.build(run, sent)
        except Exception as exc:  # its payload or event does not decode: it fails alone
            self._undecodable(run, exc)
            return
        stale = self.running.get(ex.run_id)
        if stale is not None:  # this worker stalled past its lease and got the run again
            stale[0].lost = True
            stale[1].cancel()
            log.warning(
                "run %s: lease lost; stopping the stale attempt", ex.run_id, extra=ex.log_extra
            )
        task = asyncio.create_task(self._execute(ex), name=f"stackshift-run-{ex.run_id}")
        self.running[ex.run_id] = (ex, task)

    def _undecodable(self, run: TakenRun, exc: Exception) -> None:
        log.error(
            "run %s (%s): its stored payload, event or a step does not decode (%s: %s); "
            "failed without retries",
            run.run_id,
            run.job,
            type(exc).__name__,
            exc,
        )
        error = error_json(exc, type_name="PayloadError")
        request = FailRequest(
            run_id=run.run_id,
            token=run.token,
            error_json=error,
            outcome="failed",
            retention_ms=self.ns.settings.retention_ms,
        )
        task = asyncio.ensure_future(
            self._fail_undecodable(self.ns.scripts_of(request.run_id).fail_call(request))
        )
        self._undecodable_tasks.add(task)
        task.add_done_callback(self._undecodable_tasks.discard)

    async def _fail_undecodable(self, call: ScriptCall) -> None:
        reply = await self._finish(call)
        if isinstance(reply, Exception):
            log.warning("recording the failure of run %s failed: %s", call.run_id, reply)

    async def _execute(self, ex: Execution) -> None:
        assert self._executor is not None
        try:
            await self._executor.run(ex)  # records the outcome (through _finish)
        except asyncio.CancelledError:
            if not self._stopping.is_set() and not ex.lost:
                raise
            if not ex.lost:  # cut off by a stop: handed back in _drain
                self._cut_off.append((ex.queue, ex.run_id, ex.token))
        except Exception:
            log.exception("run %s: the attempt failed unexpectedly", ex.run_id, extra=ex.log_extra)
        finally:
            held = self.running.get(ex.run_id)
            if held is not None and held[0] is ex:  # not a newer attempt of the same run
                del self.running[ex.run_id]
                self.dispatcher.permits.finished(ex.run_id)
            self._slot_freed.set()

    # finishing, batched: one pipeline for the outcomes ready in one loop iteration
    async def _finish(self, call: ScriptCall) -> object:
        """Record one outcome: its reply, or the exception it ended with (a value)."""
        try:
            reply = await self._finishes.submit(None, call)
        except Exception as exc:  # the batch failed as a whole (not a connection error)
            reply = exc
        if isinstance(reply, LayoutError):  # the gate: a newer layout
            self.refuse(reply)
        return reply

    async def _send(self, key: None, calls: list[ScriptCall]) -> list[object]:
        """One call, or one pipeline; connection errors are retried (a finish sent again is
        recognised as done by its lease token and changes nothing: lua/lib/done_by.lua)."""
        for attempt in range(4):
            try:
                return await self.ns.scripts.run_batch(calls)
            except CONNECTION_ERRORS as exc:
                if attempt == 3:
                    return [exc] * len(calls)
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")
