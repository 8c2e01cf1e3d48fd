"""The app of partition chaos tests (`stackshift-worker tests.apps.partition_jobs:app`):
four partitions whatever STACKSHIFT_TEST_PARTITIONS says (the test sets the preview
variable). A parent invokes a child whose concurrency key puts it on another partition;
the child's first step hangs on its first execution, so the test can kill its worker; its
second counts in a transactional step (a commit on the counter's partition)."""

from __future__ import annotations

import asyncio
import os

from stackshift_redis import Concurrency, RunContext, StateTx

from . import app_from_env, obs

app = app_from_env(partitions=4)
app.queue("chaos", visibility_timeout=2)


@app.job("sync_account", queue="chaos", concurrency=Concurrency(4, key="account"))
async def sync_account(ctx: RunContext) -> str:
    account = ctx.payload["account"]

    async def apply() -> str:
        n = await app.redis.incr(obs(f"apply:{account}"))
        if ctx.payload.get("hang") and n == 1:
            await app.redis.set(obs("hang_pid"), os.getpid())
            await asyncio.sleep(60)
        return f"applied {account}"

    done = await ctx.step.run("apply", apply)

    async def record(tx: StateTx) -> int:  # exactly once, even if its worker is killed
        return await tx.incr(f"recorded:{account}")

    await ctx.step.transact("record", record)
    return str(done)


@app.job("pay", queue="chaos")
async def pay(ctx: RunContext) -> str:
    return str(await ctx.step.invoke("sync", job="sync_account", payload=ctx.payload))
