"""The same kind of test under anyio's pytest plugin instead of pytest-asyncio
(TestEnv needs the asyncio backend: redis-py is asyncio-only)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stackshift_redis.testing import TestEnv

from .shop import stackshift


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_fulfil_under_anyio() -> None:
    async with TestEnv(stackshift) as env:
        run = await stackshift.start("fulfil", {"id": "o_2"})
        await env.drain()
        await stackshift.send_event("shipment.created", {"order_id": "o_2", "tracking": "A1"})
        await env.advance(timedelta(days=7))
        assert (await run.result(timeout=5))["tracking"] == "A1"
