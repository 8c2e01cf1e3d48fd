"""The README's "A taste" example as a typed module: `./run test` checks it with
`mypy --strict`, so the documented handler API type-checks in user code."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stackshift_redis import RunContext, ScheduleInfo, StackShift, SyncRunContext

stackshift = StackShift(redis_url="redis://localhost:6379/0", namespace="shop")
stackshift.queue("orders", concurrency=10, visibility_timeout=30)


async def capture_payment(intent: str) -> dict[str, str]:
    return {"intent": intent, "status": "captured"}


@stackshift.job("checkout", queue="orders", retries=3, timeout=60)
async def checkout(ctx: RunContext) -> dict[str, Any]:
    charge = await ctx.step.run("charge-card", capture_payment, ctx.payload["intent"])
    evt = await ctx.step.wait_for_event(
        "wait-shipping",
        event="shipment.created",
        match={"order_id": ctx.payload["order_id"]},
        timeout=timedelta(days=1),
        lookback=timedelta(minutes=5),
    )
    await ctx.step.sleep("cool-off", timedelta(hours=1))  # frees the worker slot
    await ctx.progress(1.0)
    return {"charge": charge, "shipment": evt.data if evt else None}


@stackshift.job("send-receipt", queue="orders")
def send_receipt(ctx: SyncRunContext) -> str:
    """A plain function runs in a thread: its step API and progress block."""
    sent: str = ctx.step.run("email", lambda: f"receipt for {ctx.payload['order_id']}")
    ctx.progress(1.0)
    ctx.state.incr("receipts")
    return sent


async def place_order() -> Any:
    run = await stackshift.start(
        "checkout", {"intent": "pi_1", "order_id": "o_1"}, idempotency_key="order:o_1"
    )
    await stackshift.send_event("shipment.created", {"order_id": "o_1"})
    return await run.result(timeout=30)


@stackshift.job("digest", queue="orders", cron="0 9 * * MON-FRI", timezone="Europe/Berlin")
async def digest(ctx: RunContext) -> str:
    """Started by its schedule (named after the job) at 09:00 Berlin time on weekdays."""
    when = ctx.scheduled_at  # the tick: an aware datetime (None outside schedules)
    return f"{ctx.schedule} for {when.isoformat() if when else 'no tick'}"


async def nightly() -> ScheduleInfo:
    info = await stackshift.schedules.create(
        "nightly-report", job="checkout", cron="30 2 * * *", timezone="Europe/Berlin",
        payload={"kind": "full"}, overlap="skip", catchup="latest", jitter=timedelta(seconds=30),
    )  # fmt: skip
    await stackshift.schedules.pause("nightly-report")
    await stackshift.schedules.resume("nightly-report")
    run = await stackshift.schedules.trigger("nightly-report")
    assert run.id and info.next_fire_at is not None
    return info
