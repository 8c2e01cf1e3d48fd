"""The app of recovery, flow-control, lifecycle and fault tests
(`stackshift-worker tests.apps.core_jobs:app`); STACKSHIFT_MAX_DELIVERIES sets its
max_deliveries (see tests/apps/__init__.py for the rest of its configuration)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from stackshift_redis import Concurrency, NonRetriableError, RunContext

from . import ENTER, app_from_env, obs

app = app_from_env(max_deliveries=int(os.environ.get("STACKSHIFT_MAX_DELIVERIES", "5")))
app.queue("recovery", visibility_timeout=2)
app.queue("long", visibility_timeout=2)
app.queue("limited", concurrency=3, visibility_timeout=5)
app.queue("poison", visibility_timeout=1)
app.queue("cli", visibility_timeout=30)
app.queue("doomed", visibility_timeout=1)
app.queue("handlers", visibility_timeout=2)
app.queue("ordered", visibility_timeout=5)
app.queue("pause", visibility_timeout=1)
app.queue("sched", visibility_timeout=5)
app.queue("flow", visibility_timeout=4)
app.queue("fanout", visibility_timeout=3)
# per-key concurrency (tests/test_flow_workers.py registers the same options in the test
# process: flow-control rules are resolved by the process that starts the run)
KEYED_OPTIONS: dict[str, Any] = {"queue": "flow", "concurrency": [Concurrency(2, key="k")]}


@app.job("two_steps", queue="recovery")
async def two_steps(ctx: RunContext) -> str:
    """Step A is quick; step B hangs on its first execution (the test kills the worker)."""

    async def step_a() -> str:
        await app.redis.incr(obs("a"))
        return "a"

    async def step_b() -> str:
        n = await app.redis.incr(obs("b"))
        await app.redis.set(obs("b_pid"), os.getpid())
        if n == 1:
            await asyncio.sleep(60)
        return "b"

    a = await ctx.step.run("A", step_a)
    b = await ctx.step.run("B", step_b)
    return str(a) + str(b)


@app.job("long_run", queue="long", retries=0)
async def long_run(ctx: RunContext) -> str:
    """Runs `payload` seconds, counting its executions."""
    await app.redis.incr(obs("execs"))
    await app.redis.rpush(obs("pids"), os.getpid())
    await asyncio.sleep(float(ctx.payload))
    return "long"


@app.job("hold", queue="limited")
async def hold(ctx: RunContext) -> int:
    """Holds a slot of the limited queue for a while, tracking concurrent executions."""
    await app.redis.eval(ENTER, 2, obs("current"), obs("max"))
    try:
        await asyncio.sleep(0.3)
    finally:
        await app.redis.decr(obs("current"))
    await app.redis.incr(obs("held"))
    return int(ctx.payload)


@app.job("crash", queue="poison")
async def crash(ctx: RunContext) -> None:
    """Kills its worker process, every time."""
    await app.redis.incr(obs("crashes"))
    os._exit(1)


@app.job("sleepy", queue="cli", retries=0)
async def sleepy(ctx: RunContext) -> str:
    """Signals it started, then sleeps `payload` seconds."""
    await app.redis.incr(obs("started"))
    await asyncio.sleep(float(ctx.payload))
    await app.redis.incr(obs("finished"))
    return "slept"


@app.job("sleepy_sync", queue="cli", retries=0)
def sleepy_sync(ctx: Any) -> str:
    """A plain-function handler (runs in a thread): signals it started, then sleeps."""
    ctx.state.incr("started")  # state: keys.state("started") of the namespace
    time.sleep(float(ctx.payload))
    ctx.state.incr("finished")
    return "slept"


@app.job("quick", queue="cli")
async def quick(ctx: RunContext) -> Any:
    """Returns its payload."""
    await app.redis.incr(obs("quick"))
    return ctx.payload


@app.job("keyed", **KEYED_OPTIONS)
async def keyed(ctx: RunContext) -> int:
    """Holds a slot of its key for a while, tracking concurrent executions per key; with
    payload hang=1 its first execution records its pid and hangs (the test kills it)."""
    k = ctx.payload["k"]
    if ctx.payload.get("hang") and await app.redis.incr(obs("hangs")) == 1:
        await app.redis.set(obs("hang_pid"), os.getpid())  # holds its slot, uncounted
        await asyncio.sleep(60)
    n = await app.redis.eval(ENTER, 2, obs(f"cur:{k}"), obs(f"max:{k}"))
    try:
        await asyncio.sleep(0.1)
    finally:
        await app.redis.decr(obs(f"cur:{k}"))
    await app.redis.incr(obs("keyed_done"))
    return int(n)


@app.job("doomed", queue="doomed", retries=0, on_failure="doomed_handler")
async def doomed(ctx: RunContext) -> None:
    """Fails for good, every time; with STACKSHIFT_KILL_ON_FAIL=1 the worker is SIGKILLed
    as the attempt fails, before the script that records the failure (and starts the
    failure handler) is sent."""
    await app.redis.incr(obs("doomed"))
    if os.environ.get("STACKSHIFT_KILL_ON_FAIL") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    raise NonRetriableError("card declined")


@app.job("doomed_handler", queue="handlers")
async def doomed_handler(ctx: RunContext) -> None:
    """The failure handler of `doomed`: records which run it handled."""
    await app.redis.rpush(obs("handled"), ctx.payload["run_id"])


@app.job("ordered", queue="ordered")
async def ordered(ctx: RunContext) -> int:
    """Notes its payload's `i` (and its pid) when it starts, then sleeps `s` seconds."""
    await app.redis.rpush(obs("order"), ctx.payload["i"])
    await app.redis.rpush(obs("order_pids"), os.getpid())
    await asyncio.sleep(ctx.payload.get("s", 0.01))
    await app.redis.incr(obs("ordered_done"))
    return int(ctx.payload["i"])


@app.job("paused_steps", queue="pause", retries=0)
async def paused_steps(ctx: RunContext) -> str:
    """Step A, then a plain (not durable) wait during which the test pauses the worker,
    then optionally progress, then step B. Each step counts its side effects."""

    async def side_effect(name: str) -> str:
        await app.redis.incr(obs(name))
        return name

    await ctx.step.run("A", side_effect, "a")
    await asyncio.sleep(float(ctx.payload["gap"]))
    if ctx.payload.get("progress"):
        await ctx.progress(f"late from {os.getpid()}")
    await ctx.step.run("B", side_effect, "b")
    return "done"


@app.job("tick", queue="sched", retries=0)
async def tick(ctx: RunContext) -> str | None:
    """Records the schedule tick it runs for (epoch ms) and the worker's pid."""
    at = ctx.scheduled_at
    if at is not None:
        await app.redis.rpush(obs("ticks"), round(at.timestamp() * 1000))
    await app.redis.sadd(obs("tick_pids"), os.getpid())
    return ctx.schedule


@app.job("fan_child", queue="fanout")
async def fan_child(ctx: RunContext) -> int:
    """A child of fan_parent: half a second of work."""
    await asyncio.sleep(0.5)
    return int(ctx.payload) * 10


@app.job("fan_parent", queue="fanout")
async def fan_parent(ctx: RunContext) -> list[int]:
    """Invokes three children in one gather, next to a step that takes FAN_SLOW seconds
    (the attempt keeps running, its three waits registered, while the step runs)."""

    async def slow() -> int:
        await app.redis.incr(obs("fan_slow"))
        await asyncio.sleep(float(os.environ.get("FAN_SLOW", "0")))
        return 1

    invokes = (ctx.step.invoke(f"c{i}", "fan_child", i) for i in range(3))
    return list(await asyncio.gather(ctx.step.run("slow", slow), *invokes))
