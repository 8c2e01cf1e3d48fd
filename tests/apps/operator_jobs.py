"""The app that worker subprocesses of the CLI and dashboard tests load
(`stackshift-worker tests.apps.operator_jobs:app`): a job that completes, one that fails on its
first execution only (so a retry completes it), one that waits for an event, and one that
publishes 20 messages once told to (the dashboard's live output).

Configured from the environment: REDIS_URL, STACKSHIFT_NAMESPACE, STACKSHIFT_TEST_CLUSTER.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stackshift_redis import RunContext

from . import app_from_env

app = app_from_env()
app.queue("shop", concurrency=4)


@app.job("checkout", queue="shop", retries=0)
async def checkout(ctx: RunContext) -> dict[str, Any]:
    """Two quick steps, then a receipt."""
    reserved = await ctx.step.run("reserve", lambda: {"sku": ctx.payload.get("sku", "x")})
    charged = await ctx.step.run("charge", lambda: 42)
    return {"reserved": reserved, "charged": charged}


@app.job("flaky", queue="shop", retries=0)
async def flaky(ctx: RunContext) -> str:
    """Fails its first execution (a state counter per run), completes after a retry."""
    n = await ctx.state.incr(f"flaky:{ctx.run_id}")
    if n == 1:
        raise RuntimeError("card declined: the first attempt always fails")
    return "paid on retry"


@app.job("await_payment", queue="shop")
async def await_payment(ctx: RunContext) -> dict[str, Any]:
    """Waits for payment.succeeded with its order id, then ships."""
    await ctx.step.run("reserve", lambda: True)
    evt = await ctx.step.wait_for_event(
        "wait-payment", event="payment.succeeded", match={"order_id": ctx.payload["order_id"]}
    )
    shipped = await ctx.step.run("ship", lambda: "shipped")
    return {"paid": evt.data if evt else None, "status": shipped}


@app.job("narrate", queue="shop")
async def narrate(ctx: RunContext) -> dict[str, int]:
    """Waits for story.go with its id, then publishes 20 lines, one every 150 ms (every
    fifth on the "progress" topic)."""
    await ctx.step.wait_for_event("wait-go", event="story.go", match={"id": ctx.payload["id"]})
    for n in range(1, 21):
        if n % 5:
            await ctx.publish({"line": n, "text": f"chapter {n}: the output arrives as it is made"})
        else:
            await ctx.publish({"pct": n * 5}, topic="progress")
        await asyncio.sleep(0.15)
    return {"lines": 20}
