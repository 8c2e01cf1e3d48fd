"""An example app: a checkout whose card is charged exactly once across a retry.

Run a worker:   stackshift-worker examples.shop:stackshift --concurrency 8
Start runs:     python -m examples.client
Test the jobs:  pytest examples/test_shop.py   (TestEnv: no Redis, no real waiting)
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from stackshift_redis import NonRetriableError, RunContext, StackShift, SyncRunContext

stackshift = StackShift(
    redis_url=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    namespace=os.environ.get("STACKSHIFT_NAMESPACE", "shop"),
)
stackshift.queue("orders", concurrency=4)


async def charge_card(ctx: RunContext, amount: int) -> dict[str, object]:
    # a side effect: counted in durable state, so the client can show it ran once
    await ctx.state.incr(f"charges:{ctx.run_id}")
    return {"charge_id": f"ch_{ctx.run_id[-6:]}", "amount": amount}


@stackshift.job("checkout", queue="orders", retries=3, backoff=0.2)
async def checkout(ctx: RunContext) -> dict[str, object]:
    """Charge the card, then reserve stock; the warehouse is down on the first attempt."""
    order = ctx.payload
    charge = await ctx.step.run("charge-card", charge_card, ctx, order["amount"])
    if ctx.attempt == 1:
        raise ConnectionError("warehouse API timed out (attempt 1)")
    reservation = await ctx.step.run(
        "reserve-stock", lambda: {"sku": order["sku"], "reserved": True}
    )
    await ctx.progress(1.0)
    return {"order": order["id"], "charge": charge, "reservation": reservation}


@stackshift.job("refund", queue="orders", retries=0)
def refund(ctx: SyncRunContext) -> None:
    """A plain function handler (runs in a thread) that always refuses."""
    raise NonRetriableError(f"refunds for {ctx.payload['order']} need a human")


@stackshift.job("fulfil", queue="orders")
async def fulfil(ctx: RunContext) -> dict[str, Any]:
    """Wait up to 3 days for the warehouse to ship; a week later, ask for a review."""
    order_id = ctx.payload["id"]
    shipment = await ctx.step.wait_for_event(
        "wait-shipment", event="shipment.created", match={"order_id": order_id},
        timeout=timedelta(days=3), lookback=timedelta(minutes=5),
    )  # fmt: skip
    if shipment is None:
        return {"order": order_id, "status": "not shipped"}
    await ctx.step.sleep("settle-in", timedelta(days=7))
    await ctx.step.send_event("ask-review", "review.requested", {"order_id": order_id})
    return {"order": order_id, "status": "shipped", "tracking": shipment.data["tracking"]}
