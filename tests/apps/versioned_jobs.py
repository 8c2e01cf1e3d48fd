"""The app of definitions, versions and patches tests (`stackshift-worker
tests.apps.versioned_jobs:app`, issue 24): DEFS_VERSIONS lists the versions of job "deploy"
this deploy registers ("1", "1,2", "2" ...), DEFS_PATCH=1 is the code with the patch "p1"
in job "patchy", DEFS_NAP the seconds "deploy" sleeps (a durable sleep)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from stackshift_redis import CancelOn, Concurrency, RunContext

from . import ENTER, app_from_env, obs

app = app_from_env()
VERSIONS = [int(v) for v in os.environ.get("DEFS_VERSIONS", "1").split(",")]
PATCH = os.environ.get("DEFS_PATCH") == "1"
NAP = float(os.environ.get("DEFS_NAP", "1"))


async def _held(key: str, seconds: float) -> None:
    """Counts concurrent executions under `key` (cur/max observations) for `seconds`."""
    await app.redis.eval(ENTER, 2, obs(f"cur:{key}"), obs(f"max:{key}"))
    try:
        await asyncio.sleep(seconds)
    finally:
        await app.redis.decr(obs(f"cur:{key}"))


@app.job(
    "tenant-sync",
    queue="defs",
    on_event="tenant.signup",
    concurrency=Concurrency(limit=1, key="tenant"),
    cancel_on=CancelOn(event="tenant.deleted", match="tenant"),
)
async def tenant_sync(ctx: RunContext) -> str:
    """Holds its tenant's slot, then sleeps durably (a tenant.deleted cancels it)."""
    await ctx.step.run("sync", _held, f"tenant:{ctx.payload['tenant']}", 0.3)
    await ctx.step.sleep("settle", ctx.payload.get("settle", 0))
    return "synced"


@app.job("sync-by-name", queue="defs", concurrency=Concurrency(limit=2, key="tenant"))
async def sync_by_name(ctx: RunContext) -> None:
    """At most two of one tenant at once."""
    await _held(f"byname:{ctx.payload['tenant']}", 0.2)


@app.job("ticked", queue="defs", concurrency=Concurrency(limit=1), priority=7)
async def ticked(ctx: RunContext) -> str:
    """A job with a whole-job limit, fired by a schedule."""
    return "tick"


@app.job("child", queue="defs", concurrency=Concurrency(limit=1, key="k"))
async def child(ctx: RunContext) -> int:
    """An invoked child with a keyed limit."""
    await _held(f"child:{ctx.payload['k']}", 0.2)
    return int(ctx.payload["i"])


@app.job("parent", queue="defs")
async def parent(ctx: RunContext) -> list[Any]:
    """Invokes three children of one key at once."""
    return list(
        await asyncio.gather(
            *(ctx.step.invoke(f"c{i}", job="child", payload={"k": "x", "i": i}) for i in range(3))
        )
    )


def _deploy(version: int) -> Any:
    async def deploy(ctx: RunContext) -> dict[str, Any]:
        first = await ctx.step.run("begin", lambda: os.getpid())
        await ctx.step.sleep("nap", ctx.payload.get("nap", NAP) if ctx.payload else NAP)
        return {"code": version, "pinned": ctx.version, "begun_by": first}

    return deploy


for _v in VERSIONS:
    app.job("deploy", _deploy(_v), queue="defs", version=_v)


@app.job("patchy", queue="defs")
async def patchy(ctx: RunContext) -> str:
    """Old code: begin, nap1, [patch point], old step, nap2. New code (DEFS_PATCH=1): the
    patch "p1" runs the "new" step instead of "old" for runs that had not passed it."""
    await ctx.step.run("begin", lambda: 1)
    await ctx.step.sleep("nap1", ctx.payload["nap1"])
    if PATCH and ctx.patched("p1"):
        path = await ctx.step.run("new", lambda: "new")
    else:
        path = await ctx.step.run("old", lambda: "old")
    await ctx.step.sleep("nap2", ctx.payload["nap2"])
    return str(path)


@app.job("patchy-sync", queue="defs")
def patchy_sync(ctx: Any) -> list[bool]:
    """A plain-function handler asking for two patches (the second is new ground too)."""
    ctx.step.run("begin", lambda: 1)
    return [ctx.patched("s1"), ctx.patched("s2")]
