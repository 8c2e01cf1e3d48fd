"""The app the stream benchmark's worker process loads (`stackshift-worker
bench.stream_jobs:app`): `ticker` waits for the event `ticker.go` naming its run (sent once
the readers are attached), then publishes n messages at a steady rate, each carrying the
wall-clock time it was published at, for the readers to measure latency against.

Configured from the environment: REDIS_URL, STACKSHIFT_NAMESPACE.
"""

from __future__ import annotations

import asyncio
import os
import time

from stackshift_redis import RunContext, StackShift

app = StackShift(
    os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    namespace=os.environ.get("STACKSHIFT_NAMESPACE", "bench"),
)


@app.job("ticker", retries=0)
async def ticker(ctx: RunContext) -> int:
    """Publish payload["n"] messages at payload["rate"] per second, payload["pad"] bytes
    of padding each."""
    await ctx.step.wait_for_event("go", event="ticker.go", match={"run": ctx.run_id})
    n, rate, pad = ctx.payload["n"], ctx.payload["rate"], "x" * ctx.payload["pad"]
    start = time.monotonic()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await ctx.publish({"i": i, "t": time.time(), "pad": pad})
    return n
