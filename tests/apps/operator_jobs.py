"""The app that worker subprocesses of the CLI and dashboard tests load
(`stackshift-worker tests.apps.operator_jobs:app`): a job that completes, one that fails on its
first execution only (so a retry completes it), and one that waits for an event.

Configured from the environment: REDIS_URL, STACKSHIFT_NAMESPACE, STACKSHIFT_TEST_CLUSTER.
"""

from __future__ import annotations

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
