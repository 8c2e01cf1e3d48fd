"""Worker: reads queues through a consumer group, claims runs, executes them, keeps leases.

Background duties are small loops: promote due runs, renew leases, reclaim expired
leases and stale deliveries, heartbeat. Finishing scripts are batched into pipelines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from .context import Execution
from .errors import InvalidArgumentError, from_redis_error
from .executor import Outcome, build_execution, run_attempt
from .keys import GROUP, check_name
from .upkeep import Upkeep

if TYPE_CHECKING:
    from .app import StackShift
    from .state import SyncState

log = logging.getLogger("stackshift.worker")


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
        app: StackShift,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        *,
        grace: float = 30.0,
        block_ms: int = 1000,
        poll_interval: float = 0.2,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError("concurrency must be a positive int")
        self.app = app
        names = list(queues) if queues else sorted({j.queue for j in app.jobs.values()})
        self.queues = [check_name("queue", q) for q in names or ["default"]]
        self.concurrency = concurrency
        self.grace = grace
        self.block_ms = block_ms
        self.poll_interval = poll_interval
        self.id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.running: dict[str, tuple[Execution, asyncio.Task[None]]] = {}
        self.backlog: dict[str, list[tuple[str, str]]] = {q: [] for q in self.queues}
        self.upkeep = Upkeep(self)
        self._stream_queue = {app.keys.stream(q): q for q in self.queues}
        self._stopping = asyncio.Event()
        self._forced = False
        self._slot_freed = asyncio.Event()
        self._pending: list[tuple[Outcome, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        self._cut_off: list[tuple[str, str, str]] = []
        self._flush_tasks: set[asyncio.Future[None]] = set()
        self._sync_state: SyncState | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._burst = False
        self._done = asyncio.Event()
        self.threads_busy = 0  # plain-function handlers still running in threads
        self.threads_lock = threading.Lock()

    @property
    def sync_state(self) -> SyncState:
        """State with blocking methods, for plain-function handlers running in threads."""
        if self._sync_state is None:
            from .state import SyncState

            loop = self._loop
            assert loop is not None

            def runner(coro: Any) -> Any:
                return asyncio.run_coroutine_threadsafe(coro, loop).result()

            self._sync_state = SyncState(self.app.state, runner)
        return self._sync_state

    # lifecycle
    async def run(self, burst: bool = False) -> None:
        """Process runs until stop() (or, with burst, until nothing is queued, running or due)."""
        self._loop = asyncio.get_running_loop()
        self._burst = burst
        self._done.clear()
        await self.upkeep.setup()
        fetch = asyncio.create_task(self._fetch_loop(), name="stackshift-fetch")
        duties = asyncio.create_task(self.upkeep.loop(), name="stackshift-upkeep")
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            try:
                await _finish_task(fetch, self.block_ms / 1000 + 1)
                await self._drain()
                self.upkeep.stopped.set()
                await _finish_task(duties, 5)
                await self.upkeep.teardown()
            finally:
                self._done.set()

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
        await self._flush()
        for queue, entries in self.backlog.items():
            if entries:
                with contextlib.suppress(Exception):
                    await self.app.scripts.release(queue, entries)
                entries.clear()

    async def _hand_back(self, cut_off: list[tuple[str, str, str]]) -> None:
        """Re-queue attempts cut off by the stop now, instead of after their lease expires:
        expire our (token-checked) leases, then reclaim."""
        for queue in {q for q, _, _ in cut_off}:
            held = [(run_id, token) for q, run_id, token in cut_off if q == queue]
            with contextlib.suppress(Exception):
                await self.app.scripts.renew(queue, held, -1)
                await self.app.scripts.reclaim(queue, self.app.retention_ms)

    # fetching and claiming
    async def _fetch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._fetch_once()
            except asyncio.CancelledError:
                raise
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
        deferred = [q for q, entries in self.backlog.items() if entries]
        for queue in deferred:
            free -= await self._claim(queue, [])
        if free <= 0:
            return
        open_queues = [q for q in self.queues if not self.backlog[q]]
        if not open_queues:
            await asyncio.sleep(0.05)
            return
        block = 50 if deferred else self.block_ms
        streams = {self.app.keys.stream(q): ">" for q in open_queues}
        reply = await self.app.redis.xreadgroup(GROUP, self.id, streams, count=free, block=block)
        if not reply:
            if self._burst and await self.upkeep.idle():
                self._stopping.set()
            return
        for stream, entries in reply:
            queue = self._stream_queue[stream.decode() if isinstance(stream, bytes) else stream]
            pairs = [(e.decode(), f[b"r"].decode()) for e, f in entries if f]
            free -= await self._claim(queue, pairs)

    async def _claim(self, queue: str, new: list[tuple[str, str]]) -> int:
        """Claim backlog + new entries of a queue up to the free slots; returns runs started."""
        entries = self.backlog[queue] + new
        free = self.free_slots()
        take, rest = entries[:free], entries[free:]
        self.backlog[queue] = rest
        if not take:
            return 0
        conf = self.app.queue_config(queue)
        replies = await self.app.scripts.claim(
            queue,
            take,
            lease_ms=round(conf.visibility_timeout * 1000),
            max_deliveries=self.app.max_deliveries,
            retention_ms=self.app.retention_ms,
        )
        started = 0
        for (entry_id, run_id), reply in zip(take, replies, strict=True):
            outcome = reply[1].decode()
            if outcome == "ok":
                self._start(queue, reply)
                started += 1
            elif outcome == "defer":
                self.backlog[queue].append((entry_id, run_id))
            elif outcome == "poison":
                log.error("run %s delivered too many times: failed as poison", run_id)
        return started

    def _start(self, queue: str, reply: list[Any]) -> None:
        ex = build_execution(self, queue, reply)
        stale = self.running.get(ex.run_id)
        if stale is not None:  # this worker stalled past its lease and got the run again
            stale[0].lost = True
            stale[1].cancel()
            log.warning("run %s: lease lost; stopping the stale attempt", ex.run_id)
        task = asyncio.create_task(self._execute(ex), name=f"stackshift-run-{ex.run_id}")
        self.running[ex.run_id] = (ex, task)

    async def _execute(self, ex: Execution) -> None:
        try:
            outcome = await run_attempt(self, ex)
            ex.finished = True
            if outcome is not None and not ex.lost:
                await self._finish(outcome)
        except asyncio.CancelledError:
            if not self._stopping.is_set() and not ex.lost:
                raise
            if not ex.lost:  # cut off by a stop: handed back in _drain
                self._cut_off.append((ex.queue, ex.run_id, ex.token))
        except Exception:
            log.exception("run %s: could not record its outcome", ex.run_id)
        finally:
            held = self.running.get(ex.run_id)
            if held is not None and held[0] is ex:  # not a newer attempt of the same run
                del self.running[ex.run_id]
            self._slot_freed.set()

    # finishing, batched: one pipeline for the outcomes ready in one loop iteration
    async def _finish(self, outcome: Outcome) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((outcome, fut))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        await fut

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flush_tasks.add(task)
        task.add_done_callback(self._flush_tasks.discard)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        try:
            if batch:
                results = await self._send([o for o, _ in batch])
                for (o, _), res in zip(batch, results, strict=True):
                    if isinstance(res, Exception):
                        log.warning("recording %s of run %s failed: %s", o.script, o.args[1], res)
        finally:
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def _send(self, outcomes: list[Outcome]) -> list[Any]:
        """One call, or one pipeline; connection errors are retried (the scripts are
        idempotent: a repeated finish fails its lease check and changes nothing)."""
        for attempt in range(4):
            try:
                if len(outcomes) == 1:
                    return [await self._safe_call(outcomes[0])]
                async with self.app.redis.pipeline(transaction=False) as pipe:
                    for o in outcomes:
                        await self.app.scripts.queue_call(pipe, o.script, o.keys, o.args)
                    results = await pipe.execute(raise_on_error=False)
                return [from_redis_error(r) if isinstance(r, ResponseError) else r for r in results]
            except (ConnectionError, TimeoutError, RedisConnectionError) as exc:
                if attempt == 3:
                    return [exc] * len(outcomes)
                await asyncio.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    async def _safe_call(self, o: Outcome) -> Any:
        try:
            return await self.app.scripts.call(o.script, o.keys, o.args)
        except (ConnectionError, TimeoutError, RedisConnectionError):
            raise
        except Exception as exc:
            return exc
