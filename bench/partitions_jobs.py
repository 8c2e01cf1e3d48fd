"""The app the partitions benchmark's worker processes load (`stackshift-worker
bench.partitions_jobs:app`): `steps` (3 steps), `waiter` (waits for the event `go` naming
its payload's id) and `parent` (invokes `child`, which runs one step).

Each handler appends its run id to a file of its own process under $PBENCH_DIR when it
returns (`done-<pid>`), and `waiter` does so before it waits (`waiting-<pid>`): the
benchmark counts the lines instead of polling Redis, whose CPU it measures.

Configured from the environment: PBENCH_PORT (a cluster node), PBENCH_NS, PBENCH_P,
PBENCH_DIR.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.cluster import RedisCluster

from stackshift_redis import RunContext, StackShift


class ClusterClient(RedisCluster):
    """A RedisCluster that learns the slot map before its first command (as
    tests/helpers.py's ClusterClient: redis-py may otherwise run a burst of first
    commands twice)."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


def make_app(port: int, namespace: str, partitions: int) -> StackShift:
    """The benchmark's app on the cluster node at `port` (the bench's own side uses it too)."""
    app = StackShift(
        redis=ClusterClient(host="127.0.0.1", port=port),
        namespace=namespace,
        partitions=partitions,
    )
    app.job("steps", noting(steps), retries=0)
    app.job("waiter", noting(waiter), retries=0)
    app.job("parent", noting(parent), retries=0)
    app.job("child", noting(child), retries=0)
    return app


def _note(kind: str, run_id: str) -> None:
    """One line in this process's file of `kind` (O_APPEND: whole lines)."""
    path = os.path.join(os.environ["PBENCH_DIR"], f"{kind}-{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{run_id}\n".encode())
    finally:
        os.close(fd)


def noting(fn: Callable[[RunContext], Awaitable[Any]]) -> Callable[[RunContext], Awaitable[Any]]:
    """The handler, noting its run in `failed-<pid>` when it raises (the bench stops)."""

    @functools.wraps(fn)
    async def handler(ctx: RunContext) -> Any:
        try:
            return await fn(ctx)
        except Exception as exc:  # a suspended wait is a BaseException: not noted
            _note("failed", f"{ctx.run_id}:{type(exc).__name__}:{exc}".replace(" ", "_"))
            raise

    return handler


async def add(x: int, y: int) -> int:
    return x + y


async def steps(ctx: RunContext) -> int:
    a = await ctx.step.run("one", add, 0, 1)
    b = await ctx.step.run("two", add, a, 1)
    c = await ctx.step.run("three", add, b, 1)
    _note("done", ctx.run_id)
    return int(c)


async def waiter(ctx: RunContext) -> Any:
    _note("waiting", ctx.run_id)
    evt = await ctx.step.wait_for_event("go", event="go", match={"id": ctx.payload["id"]})
    _note("done", ctx.run_id)
    return evt.data["id"] if evt else None


async def parent(ctx: RunContext) -> Any:
    got = await ctx.step.invoke("kid", "child", ctx.payload)
    _note("done", ctx.run_id)
    return got


async def child(ctx: RunContext) -> Any:
    return await ctx.step.run("one", add, len(ctx.payload["id"]), 1)


app: StackShift | None = None
if "PBENCH_PORT" in os.environ:
    app = make_app(
        int(os.environ["PBENCH_PORT"]), os.environ["PBENCH_NS"], int(os.environ["PBENCH_P"])
    )
