"""A stream reader across a Redis restart: Redis with AOF (appendfsync always) is killed
and started again on the same port and directory while a reader waits for a run's next
message; the reader rides out the outage and resumes after the last id it yielded: every
message once, in order."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import OwnRedis, skip_on_cluster, wait_for

from stackshift_redis import RunContext, StackShift, StreamMessage


@pytest.fixture
def aof_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(aof=True)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@skip_on_cluster  # one server restarted in place
async def test_a_reader_resumes_after_redis_restarts_from_its_aof(
    aof_redis: OwnRedis, namespace: str, running_worker: Any
) -> None:
    app = StackShift(aof_redis.url, namespace=namespace)
    gate = asyncio.Event()

    @app.job("talk")
    async def talk(ctx: RunContext) -> int:
        for i in range(100):
            if i == 50:
                await gate.wait()  # Redis restarts while the reader waits for #50
            await ctx.publish({"n": i})
        return 100

    got: list[StreamMessage] = []

    async def reader() -> None:
        async for msg in app.run(run.id).stream():
            got.append(msg)

    try:
        run = await app.start("talk")
        task = asyncio.create_task(reader())
        worker = running_worker(app)
        await wait_for(lambda: len(got) == 50, 15)
        await asyncio.sleep(0.3)  # the reader blocks in XREAD on the run's stream
        aof_redis.stop()
        await asyncio.sleep(1.0)
        assert not task.done()  # riding out the outage
        aof_redis.start()  # the same port and directory: the AOF is replayed
        gate.set()
        assert await run.result(timeout=30) == 100
        await asyncio.wait_for(task, 20)
        assert [m.data["n"] for m in got] == list(range(100))
        assert len({m.id for m in got}) == 100 and all(m.attempt == 1 for m in got)
        await asyncio.wait_for(worker.stop(), 15)
    finally:
        await app.close()
