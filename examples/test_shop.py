"""Tests of examples/shop.py's jobs as a user writes them: TestEnv runs the app in-process
on fakeredis (`pip install 'stackshift-redis[testing]'`), with a clock the test moves.

    pytest examples/test_shop.py
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from stackshift_redis import RunFailed
from stackshift_redis.testing import TestEnv

from .shop import stackshift

ORDER = {"id": "o_1", "sku": "sku-42", "amount": 1999}


@pytest.mark.asyncio
async def test_checkout_charges_the_card_once_across_a_retry() -> None:
    async with TestEnv(stackshift) as env:
        run = await stackshift.start("checkout", ORDER, idempotency_key="order:o_1")
        assert (await stackshift.start("checkout", ORDER, idempotency_key="order:o_1")).deduplicated
        await env.drain()  # attempt 1 charges, then the warehouse call fails
        assert await run.status() == "scheduled"  # retrying after its backoff (0.2 s)
        await env.advance(0.2)
        result = await run.result(timeout=5)
        assert result["reservation"] == {"sku": "sku-42", "reserved": True}
        assert await stackshift.state.get(f"charges:{run.id}") == 1


@pytest.mark.asyncio
async def test_refund_fails_without_retrying() -> None:
    async with TestEnv(stackshift) as env:
        run = await stackshift.start("refund", {"order": "o_1"})
        await env.drain()
        with pytest.raises(RunFailed, match="need a human"):
            await run.result(timeout=5)


@pytest.mark.asyncio
async def test_fulfil_waits_for_the_shipment_then_a_week() -> None:
    async with TestEnv(stackshift) as env:
        run = await stackshift.start("fulfil", ORDER)
        await env.drain()
        assert await run.status() == "waiting"
        await env.advance(timedelta(days=1))
        await stackshift.send_event("shipment.created", {"order_id": "o_1", "tracking": "Z9"})
        await env.drain()
        assert await run.status() == "waiting"  # now sleeping for a week
        await env.advance(timedelta(days=7))
        assert await run.result(timeout=5) == {
            "order": "o_1", "status": "shipped", "tracking": "Z9"
        }  # fmt: skip


@pytest.mark.asyncio
async def test_fulfil_gives_up_when_nothing_ships_for_three_days() -> None:
    async with TestEnv(stackshift) as env:
        run = await stackshift.start("fulfil", ORDER)
        await env.advance(timedelta(days=3))
        assert await run.result(timeout=5) == {"order": "o_1", "status": "not shipped"}
