"""An app for worker subprocesses of tests/test_daytwo_*.py (`stackshift-worker
tests.daytwo_jobs:app`), configured from the environment: REDIS_URL,
STACKSHIFT_NAMESPACE, DAYTWO_LIMIT (queue "heavy" concurrency; unset: not configured here)
and DAYTWO_FAIL_STARTUP (a startup hook raises)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from redis.asyncio.cluster import RedisCluster

from stackshift_redis import RunContext, StackShift

NAMESPACE = os.environ.get("STACKSHIFT_NAMESPACE", "default")
_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
if os.environ.get("STACKSHIFT_TEST_CLUSTER") == "1" and not os.environ.get("DAYTWO_STANDALONE"):
    _server: dict[str, Any] = {"redis": RedisCluster.from_url(_URL)}
else:
    _server = {"redis_url": _URL}
app = StackShift(**_server, namespace=NAMESPACE)
if os.environ.get("DAYTWO_LIMIT"):
    app.queue("heavy", concurrency=int(os.environ["DAYTWO_LIMIT"]), visibility_timeout=5)

_ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""


def obs(name: str) -> str:
    """The plain key where jobs of this namespace record `name`."""
    return f"obs:{{{NAMESPACE}}}:{name}"


@app.on_startup
async def open_pool(resources: dict[str, Any]) -> None:
    """Puts a shared resource in place (or fails, with DAYTWO_FAIL_STARTUP)."""
    if os.environ.get("DAYTWO_FAIL_STARTUP"):
        raise RuntimeError("database unreachable")
    resources["pool"] = f"pool-{os.getpid()}"


@app.on_shutdown
def close_pool(resources: dict[str, Any]) -> None:
    """Records that the shutdown hook ran, with the resource it saw (a plain function)."""
    import redis

    client = redis.Redis.from_url(_URL) if "redis_url" in _server else None
    if client is not None:
        client.set(obs("shutdown"), str(resources.get("pool")))
        client.close()


@app.job("pooled", queue="life")
async def pooled(ctx: RunContext) -> Any:
    """Returns the resource its worker's startup hook created."""
    return ctx.resources["pool"]


@app.job("echo", queue="life")
async def echo(ctx: RunContext) -> Any:
    """Returns its payload."""
    return ctx.payload


@app.job("hold", queue="heavy")
async def hold(ctx: RunContext) -> int:
    """Holds a slot of queue "heavy" for a while, tracking concurrent executions."""
    await app.redis.eval(_ENTER, 2, obs("current"), obs("max"))
    try:
        await asyncio.sleep(0.4)
    finally:
        await app.redis.decr(obs("current"))
    return int(ctx.payload)


app.queue("blockq", visibility_timeout=2)


def blocking_charge(amount: int) -> int:
    """A blocking SDK call (a plain function): sleeps 4 s, twice the visibility timeout."""
    import redis

    client = redis.Redis.from_url(_URL) if "redis_url" in _server else None
    if client is not None:
        client.incr(obs("charges"))
        client.close()
    import time

    time.sleep(4)
    return amount


@app.job("blocking", queue="blockq", retries=0)
async def blocking(ctx: RunContext) -> Any:
    """An async handler calling a blocking function through a step."""
    return await ctx.step.run("charge", blocking_charge, ctx.payload)
