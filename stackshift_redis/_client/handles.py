"""Run handles and the shared result waiter (one blocking reader per process, no polling);
output streams are read through streams.py (one blocking reader per followed run)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

from redis.asyncio.cluster import RedisCluster

from .._core.namespace import Namespace
from .._core.output import StreamMessage, check_message_id, check_topic
from .._core.records import Duration, RunInfo, RunStatus, seconds
from ..errors import ResultTimeout, RunCancelled, RunFailed, RunNotFoundError
from .reads import get_run, run_status
from .streams import Tails, block_ms, follow

_SAFETY_CHECK_S = 5.0
_MAX_WATCHES = 32  # concurrent watch calls: a RedisCluster client fails, not waits, when
# its pool (100 connections per node by default) runs out, and a namespace is one node


class RunHandle:
    """A started run: its id, whether it was deduplicated, and ways to await it.

    `skipped` is None, or "rate_limited" / "singleton" when flow control skipped the start:
    then no run was created, `id` is None and status()/result() raise RunNotFoundError."""

    def __init__(
        self,
        ns: Namespace,
        waiter: ResultWaiter,
        run_id: str | None,
        deduplicated: bool = False,
        skipped: str | None = None,
    ) -> None:
        self._ns = ns
        self._waiter = waiter
        self.id = run_id
        self.deduplicated = deduplicated
        self.skipped = skipped

    def __repr__(self) -> str:
        if self.skipped:
            return f"RunHandle(id=None, skipped={self.skipped!r})"
        return f"RunHandle(id={self.id!r}, deduplicated={self.deduplicated})"

    def _run_id(self) -> str:
        if self.id is None:
            raise RunNotFoundError(f"no run: the start was skipped ({self.skipped})")
        return self.id

    async def status(self) -> str:
        """The run's status now; RunNotFoundError when the run is unknown (or expired)."""
        run_id = self._run_id()
        value = await run_status(self._ns, run_id)
        if value is None:
            raise RunNotFoundError(f"no run {run_id}")
        return value

    async def info(self) -> RunInfo | None:
        """The run's RunInfo, as `app.get_run(id)` (None for a skipped start)."""
        return await get_run(self._ns, self.id) if self.id is not None else None

    async def result(self, timeout: Duration | None = None) -> Any:
        """The return value once completed; RunFailed, RunCancelled or TimeoutError."""
        limit = seconds(timeout, "timeout") if timeout is not None else None
        run_id = self._run_id()
        if self._ns.settle is not None:  # inside a TestEnv: skip virtual time to the end
            await self._ns.settle(run_id)
        status, result, error = await self._waiter.wait(run_id, limit)
        if status == RunStatus.COMPLETED:
            return self._ns.serializer.loads(result) if result is not None else None
        err = json.loads(error) if error else {}
        if status == RunStatus.CANCELLED:
            raise RunCancelled(err.get("message") or "run cancelled", run_id=run_id)
        raise RunFailed(
            f"run {run_id} failed: {err.get('type', '?')}: {err.get('message', '')}",
            run_id=run_id,
            error=err,
        )

    def stream(
        self, topic: str | None = None, after: str | None = None
    ) -> AsyncGenerator[StreamMessage, None]:
        """The run's output (`ctx.publish`) as an async iterator of StreamMessage: every
        topic or only `topic`, in publish order, from the first message or after the
        message id `after`. It waits for new messages (one blocking read per run and
        process, shared by its readers) and ends once the run is final and every message
        was read. Iterating raises RunNotFoundError when there is no such run."""
        run_id = self._run_id()
        if topic is not None:
            check_topic(topic)
        if after is not None:
            check_message_id(after)
        return follow(self._ns, self._waiter.tails, run_id, topic, after)


class ResultWaiter:
    """Resolves result() waits from the done streams (keys.done(), one per partition):
    one XREAD BLOCK loop for all waiters. With P > 1 one loop reads every partition's
    stream in one XREAD on standalone Redis; on a Redis Cluster (no XREAD across slots)
    each partition with awaited runs has its own loop."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns
        self._futures: dict[str, list[asyncio.Future[None]]] = {}
        self._readers: dict[int, tuple[asyncio.Task[None], asyncio.Future[None]]] = {}
        self._last_ids: dict[str, Any] = {}  # done stream key -> the last entry read
        self._watch_slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self.tails = Tails(ns)
        """The readers of run output streams (RunHandle.stream)."""

    def _group(self, run_id: str) -> int:
        """Which reader serves a run: 0 (the only one) unless P > 1 on a cluster, where it
        is the run's partition."""
        if self._ns.partitions == 1 or not isinstance(self._ns.redis, RedisCluster):
            return 0
        return self._ns.part_of(run_id)

    def _parts(self, group: int) -> list[int]:
        """The partitions whose done streams reader `group` reads."""
        if self._ns.partitions > 1 and isinstance(self._ns.redis, RedisCluster):
            return [group]
        return list(range(self._ns.partitions))

    def _awaited(self, group: int) -> list[str]:
        """The awaited runs reader `group` serves."""
        if self._ns.partitions == 1 or not isinstance(self._ns.redis, RedisCluster):
            return list(self._futures)
        return [run_id for run_id in self._futures if self._group(run_id) == group]

    async def _watch(self, run_id: str) -> tuple[str, Any, Any] | None:
        """`scripts.watch`, with at most _MAX_WATCHES in flight (a thousand waiters at once)."""
        loop = asyncio.get_running_loop()
        if self._watch_slots is None or self._watch_slots[0] is not loop:
            self._watch_slots = (loop, asyncio.Semaphore(_MAX_WATCHES))
        async with self._watch_slots[1]:
            return await self._ns.scripts_of(run_id).watch(run_id)

    async def wait(self, run_id: str, timeout: float | None) -> tuple[str, Any, Any]:
        """(status, result bytes, error json) once the run is final."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._futures.setdefault(run_id, []).append(fut)
        try:
            async with asyncio.timeout(timeout):
                await self._ensure_reader(self._group(run_id))
                while True:
                    reply = await self._watch(run_id)
                    if reply is None:
                        raise RunNotFoundError(f"no run {run_id}")
                    if RunStatus(reply[0]).is_final:
                        return reply
                    await fut
                    fut = loop.create_future()
                    self._futures.setdefault(run_id, []).append(fut)
        except TimeoutError:
            raise ResultTimeout(f"run {run_id} did not finish within {timeout}s") from None
        finally:
            waiters = self._futures.get(run_id, [])
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._futures.pop(run_id, None)

    async def _ensure_reader(self, group: int) -> None:
        """Start reader `group` once; it learns its streams' last ids before anyone watches."""
        reader = self._readers.get(group)
        if reader is None or reader[0].done():
            ready = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._read(group, ready), name="stackshift-results")
            reader = self._readers[group] = (task, ready)
        await asyncio.shield(reader[1])

    def _resolve(self, run_id: str) -> None:
        for fut in self._futures.pop(run_id, []):
            if not fut.done():
                fut.set_result(None)

    async def _read(self, group: int, ready: asyncio.Future[None]) -> None:
        redis = self._ns.redis
        keys = [self._ns.part_keys[p].done() for p in self._parts(group)]
        try:
            if len(keys) == 1:
                lasts = [await redis.xrevrange(keys[0], count=1)]
            else:
                async with redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.xrevrange(key, count=1)
                    lasts = await pipe.execute()
        except Exception as exc:
            ready.set_exception(exc)
            return
        for key, last in zip(keys, lasts, strict=True):
            self._last_ids[key] = last[0][0] if last else b"0-0"
        ready.set_result(None)
        loop, block = asyncio.get_running_loop(), block_ms(redis)
        next_check = loop.time() + _SAFETY_CHECK_S
        while self._awaited(group):
            try:
                streams = {key: self._last_ids[key] for key in keys}
                reply = await redis.xread(streams, count=1000, block=block)
            except asyncio.CancelledError:
                raise
            except Exception:  # connection trouble: back off, then re-check everything
                await asyncio.sleep(0.5)
                reply, next_check = None, 0.0
            if not reply:
                if loop.time() >= next_check:
                    await self._recheck(group)
                    next_check = loop.time() + _SAFETY_CHECK_S
                continue
            for stream, entries in reply:
                key = stream.decode() if isinstance(stream, bytes) else str(stream)
                for entry_id, fields in entries:
                    self._last_ids[key] = entry_id
                    self._resolve(fields[b"r"].decode())

    async def _recheck(self, group: int) -> None:
        """Quiet (or a notification lost to a reconnect): one pipelined status check."""
        ids = self._awaited(group)
        with contextlib.suppress(Exception):
            async with self._ns.redis.pipeline(transaction=False) as pipe:
                for run_id in ids:
                    pipe.hget(self._ns.keys_of(run_id).run(run_id), "status")
                statuses = await pipe.execute()
            for run_id, status in zip(ids, statuses, strict=True):
                if status is None or RunStatus(status.decode()).is_final:
                    self._resolve(run_id)

    async def close(self) -> None:
        """Stop the reader tasks.

        redis-py can lose a cancellation that lands mid-command (the blocking XREAD is then
        re-sent, redis/redis-py#2028), so the cancel is repeated until the task ends.
        """
        await self.tails.close()
        readers, self._readers = list(self._readers.values()), {}
        for task, _ in readers:
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
