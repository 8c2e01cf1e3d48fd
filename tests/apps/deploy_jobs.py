"""The app of deploy and outage tests (`stackshift-worker tests.apps.deploy_jobs:app`):
DAYTWO_LIMIT sets queue "heavy"'s concurrency (unset: not configured here),
DAYTWO_FAIL_STARTUP makes a startup hook raise and DAYTWO_STANDALONE connects by URL even
on a cluster run (see tests/apps/__init__.py for the rest of its configuration)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from stackshift_redis import RunContext

from . import ENTER, app_from_env, obs

app = app_from_env(standalone=bool(os.environ.get("DAYTWO_STANDALONE")))
if os.environ.get("DAYTWO_LIMIT"):
    app.queue("heavy", concurrency=int(os.environ["DAYTWO_LIMIT"]), visibility_timeout=5)


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

    client = redis.Redis.from_url(app.redis_url) if app.redis_url else None
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
    await app.redis.eval(ENTER, 2, obs("current"), obs("max"))
    try:
        await asyncio.sleep(0.4)
    finally:
        await app.redis.decr(obs("current"))
    return int(ctx.payload)


app.queue("blockq", visibility_timeout=2)


def blocking_charge(amount: int) -> int:
    """A blocking SDK call (a plain function): sleeps 4 s, twice the visibility timeout."""
    import redis

    client = redis.Redis.from_url(app.redis_url) if app.redis_url else None
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
