"""The app of the transactional-step fault tests (`stackshift-worker
tests.apps.transact_jobs:app`, tests/test_transact_faults.py). STACKSHIFT_TX_FAULT names
where the test-only commit hook strikes ("before_commit" | "after_commit") and how:
"kill" (SIGKILL the process) or "stop" (SIGSTOP it: the test continues it once its lease
expired, so its commit arrives late); STACKSHIFT_TX_P is the chance per commit."""

from __future__ import annotations

import os
import random
import signal
from typing import Any

from stackshift_redis import RunContext, StateTx
from stackshift_redis._attempt import transact as tx_mod

from . import app_from_env

app = app_from_env(max_deliveries=50)
app.queue("tx", visibility_timeout=1)
BUCKETS = 10

_AT, _, _HOW = os.environ.get("STACKSHIFT_TX_FAULT", "").partition(":")
_P = float(os.environ.get("STACKSHIFT_TX_P", "0"))


def _fault(point: str) -> None:
    if point == _AT and random.random() < _P:
        os.kill(os.getpid(), signal.SIGSTOP if _HOW == "stop" else signal.SIGKILL)


if _AT:
    tx_mod.FAULT = _fault


def counter_name(i: int) -> str:
    """Run i's own counter: braced by its bucket, so that with partitions it shares the
    partition of the bucket counter its commit also writes (docs/guides/scaling-out.md)."""
    return f"{{bucket:{i % BUCKETS}}}:c:{i}"


def bucket_name(b: int) -> str:
    """The counter shared by the runs of bucket b."""
    return f"{{bucket:{b}}}:total"


async def _parent(tx: StateTx, i: int) -> int:
    await tx.incr(counter_name(i))
    total = await tx.incr(bucket_name(i % BUCKETS))
    tx.send_event("tx.ev", {"i": i})  # with partitions: a leg per partition
    tx.start("tx_child", i, idempotency_key=f"child-{i}")  # routed by its key
    return total


async def _count(tx: StateTx, key: str) -> int:
    return await tx.incr(key)


@app.job("tx_parent", queue="tx", retries=20, backoff=0.05)
async def tx_parent(ctx: RunContext) -> Any:
    return await ctx.step.transact("commit", _parent, ctx.payload)


@app.job("tx_child", queue="tx", retries=20, backoff=0.05)
async def tx_child(ctx: RunContext) -> Any:
    return await ctx.step.transact("count", _count, f"child:{ctx.payload}")


@app.job("tx_on_ev", queue="tx", on_event="tx.ev", retries=20, backoff=0.05)
async def tx_on_ev(ctx: RunContext) -> Any:
    assert ctx.event is not None
    return await ctx.step.transact("count", _count, f"ev:{ctx.event.data['i']}")


@app.job("tx_incr", queue="tx", retries=20, backoff=0.05)
async def tx_incr(ctx: RunContext) -> Any:
    """50 runs incrementing one counter: each returns the value it wrote."""
    return await ctx.step.transact("incr", _count, "one")
