"""The app of the round-2 dashboard browser tests (`tests.apps.ops_jobs:app`): a job
whose steps return values and that then sleeps two hours, one waiting for an event with a
timeout, one that fails its first attempt (a bulk retry completes it), and one that
completes or fails by its payload (the overview chart's burst)."""

from __future__ import annotations

from typing import Any

from stackshift_redis import RunContext

from . import app_from_env

app = app_from_env()
app.queue("ops", concurrency=50)
app.queue("imports", concurrency=50)


@app.job("sign", queue="ops")
async def sign(ctx: RunContext) -> str:
    """A short result, a long one, then a two-hour sleep."""
    sig = await ctx.step.run("sign", lambda: "sig-1")
    await ctx.step.run("report", lambda: {"rows": [{"n": i, "ok": True} for i in range(40)]})
    await ctx.step.sleep("cool-down", 7200)
    return str(sig)


@app.job("pay", queue="ops")
async def pay(ctx: RunContext) -> Any:
    """Waits up to an hour for payment.succeeded with its order id."""
    evt = await ctx.step.wait_for_event(
        "wait-payment",
        event="payment.succeeded",
        match={"order_id": ctx.payload["order_id"]},
        timeout=3600,
    )
    return evt.data if evt else None


@app.job("import_row", queue="imports", retries=0)
async def import_row(ctx: RunContext) -> str:
    """Fails its first execution (the upstream was down); a retry completes it."""
    if await ctx.state.incr(f"import:{ctx.run_id}") == 1:
        raise RuntimeError("upstream unavailable")
    return "imported"


@app.job("burst", queue="ops", retries=0)
def burst(ctx: RunContext) -> str:
    """Completes, or fails when the payload says so."""
    if ctx.payload.get("fail"):
        raise ValueError("bad row")
    return "ok"
