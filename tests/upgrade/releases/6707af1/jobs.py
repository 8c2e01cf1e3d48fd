"""The jobs of the upgrade fixture of release 6707af1, written with the public API only.

The same module is imported by the release that made the fixture (make_fixture.py, its
worker processes) and by every later release whose tests load the dump and finish its runs,
so it uses nothing but `from stackshift_redis import ...` names of API.md, and its handlers
are deterministic: every result is a function of the payload (and of the event or child
result a wait returns), never of time, run ids or attempt timing.

Side effects are counted: each step that does something increments a state counter
`fx:<tag>:<step>` (`tag` is in every payload) inside the step function, so a test proves
that no completed step ran twice by reading the counters (manifest.json lists the
expected values).

`hold=True` (make_fixture.py's crash worker: env STACKSHIFT_FIXTURE_HOLD=1) makes the step
`held` of a run whose payload has `"hold": true` block for an hour before its side effect:
the fixture maker SIGKILLs the worker while it blocks, leaving the run leased mid-step.
Without `hold` (every later load) the step runs at once.

Worker processes load `tests.upgrade.releases.6707af1.jobs:app`, configured from the
environment: STACKSHIFT_FIXTURE_REDIS_URL, STACKSHIFT_FIXTURE_NAMESPACE,
STACKSHIFT_FIXTURE_HOLD=1, STACKSHIFT_FIXTURE_WITHOUT=job,job (jobs left unregistered),
STACKSHIFT_FIXTURE_CLUSTER=1 (a RedisCluster client).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any, TypeVar

from stackshift_redis import (
    CancelOn,
    Concurrency,
    Debounce,
    NonRetriableError,
    RateLimit,
    RunContext,
    Singleton,
    StackShift,
    SyncRunContext,
    Throttle,
)

F = TypeVar("F", bound=Callable[..., Any])
NAMESPACE = "fixture"
LONG = timedelta(days=3650)  # event waits a later test must still be able to satisfy
SHORT = 30  # seconds: sleeps, retry backoff, delays, throttle and debounce periods (all
# in the past once a later release loads the dump, so simply due then)
THROTTLE_S = 5  # a throttle's window counts actual starts: the deferred runs of the
# fixture start THROTTLE_S apart after a load, so it is kept short
HOLD_S = 3600

QUEUES = ("work", "crash", "reclaim", "limited", "flow", "idle", "paused", "rollout")


def make_app(
    redis_url: str | None = None,
    redis: Any = None,
    namespace: str = NAMESPACE,
    hold: bool = False,
    without: Collection[str] = (),
) -> StackShift:
    """The fixture's app: its queues and jobs on `redis_url` (or a client `redis`).
    `without`: job names left unregistered (a worker of a deploy that lacks them)."""
    if redis is not None:
        app = StackShift(redis=redis, namespace=namespace)
    else:
        app = StackShift(redis_url or "redis://localhost:6379/0", namespace=namespace)

    def job(name: str, **options: Any) -> Callable[[F], F]:
        if name in without:
            return lambda fn: fn
        return app.job(name, **options)

    app.queue("work", visibility_timeout=30)
    app.queue("crash", visibility_timeout=10)  # its worker is SIGKILLed: leases expire
    app.queue("reclaim", visibility_timeout=2)  # a lease recovered while the queue was paused
    app.queue("limited", concurrency=1, visibility_timeout=10)  # a global limit
    app.queue("flow", visibility_timeout=10)
    app.queue("idle", visibility_timeout=30)  # no worker consumes it while the fixture is made
    app.queue("paused", visibility_timeout=30)  # paused by the fixture maker
    app.queue("rollout", visibility_timeout=30)  # its worker lacks the job `rolling`

    async def effect(ctx: RunContext, step: str, counter: str | None = None) -> str:
        """A step with a counted side effect; returns "<step>-<tag>"."""
        tag = ctx.payload["tag"]

        async def fn() -> str:
            await ctx.state.incr(f"fx:{tag}:{counter or step}")
            return f"{counter or step}-{tag}"

        result: str = await ctx.step.run(step, fn)
        return result

    async def held(ctx: RunContext) -> str:
        """The step during which the fixture maker kills the crash worker."""
        tag = ctx.payload["tag"]
        await ctx.progress({"at": "held"})

        async def fn() -> str:
            if hold and ctx.payload.get("hold"):
                await asyncio.sleep(HOLD_S)
            await ctx.state.incr(f"fx:{tag}:held")
            return f"held-{tag}"

        result: str = await ctx.step.run("held", fn)
        return result

    # -- completed, replayed --------------------------------------------------------------
    @job("rich", queue="work")
    async def rich(ctx: RunContext) -> dict[str, Any]:
        """Many step shapes: run, parallel runs, a loop (send, send#2), send_event, a short
        sleep, a last step (a replay from "final" copies every step before it)."""
        a = await effect(ctx, "a")
        b = await asyncio.gather(effect(ctx, "b1"), effect(ctx, "b2"))
        sent = [await effect(ctx, "send", f"send{i}") for i in range(2)]
        note = await ctx.step.send_event("notify", "rich.done", {"tag": ctx.payload["tag"]})
        await ctx.step.sleep("pause", 0.2)
        final = await effect(ctx, "final")
        return {"tag": ctx.payload["tag"], "a": a, "b": list(b), "sent": sent,
                "notified": isinstance(note, dict), "final": final}  # fmt: skip

    # -- a failed attempt waiting for its retry ------------------------------------------
    @job("flaky", queue="work", retries=3, backoff=SHORT)
    async def flaky(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        tag, attempt = ctx.payload["tag"], ctx.attempt

        async def b() -> str:
            if attempt == 1:
                raise RuntimeError("first attempt fails")
            await ctx.state.incr(f"fx:{tag}:b")
            return f"b-{tag}"

        b_result = await ctx.step.run("b", b)
        return {"tag": tag, "a": a, "b": b_result, "attempt": ctx.attempt}

    # -- durable waits ---------------------------------------------------------------------
    @job("sleeper", queue="work")
    async def sleeper(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        await ctx.step.sleep("nap", SHORT)
        b = await effect(ctx, "b")
        return {"tag": ctx.payload["tag"], "a": a, "b": b}

    @job("waiter", queue="work")
    async def waiter(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        timeout = ctx.payload.get("timeout_s")
        evt = await ctx.step.wait_for_event(
            "approve", event="approval", match={"order": ctx.payload["order"]},
            timeout=LONG if timeout is None else timeout,
        )  # fmt: skip
        b = await effect(ctx, "b")
        return {"tag": ctx.payload["tag"], "a": a, "b": b,
                "data": evt.data if evt is not None else None}  # fmt: skip

    @job("parent", queue="work")
    async def parent(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        tag = ctx.payload["tag"]
        child = await ctx.step.invoke("child", job=ctx.payload["child_job"],
                                      payload={"tag": f"{tag}-child"})  # fmt: skip
        b = await effect(ctx, "b")
        return {"tag": tag, "a": a, "b": b, "child": child}

    @job("child_sleep", queue="work")
    async def child_sleep(ctx: RunContext) -> dict[str, Any]:
        await ctx.step.sleep("nap", SHORT)
        return {"child": ctx.payload["tag"], "c": await effect(ctx, "c")}

    @job("child_idle", queue="idle")
    async def child_idle(ctx: RunContext) -> dict[str, Any]:
        return {"child": ctx.payload["tag"], "c": await effect(ctx, "c")}

    @job("gather", queue="work")
    async def gather(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        _, evt = await asyncio.gather(
            ctx.step.sleep("nap", SHORT),
            ctx.step.wait_for_event("sig", event="signal", match={"key": ctx.payload["key"]},
                                    timeout=LONG),
        )  # fmt: skip
        b = await effect(ctx, "b")
        return {"tag": ctx.payload["tag"], "a": a, "b": b,
                "data": evt.data if evt is not None else None}  # fmt: skip

    @job("lookback", queue="work")
    async def lookback(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        evt = await ctx.step.wait_for_event(
            "lb", event="ping", match={"id": ctx.payload["id"]}, timeout=LONG,
            lookback=timedelta(minutes=30),
        )  # fmt: skip
        return {"tag": ctx.payload["tag"], "a": a,
                "data": evt.data if evt is not None else None}  # fmt: skip

    @job("cancellable", queue="work",
             cancel_on=[CancelOn(event="order.cancelled", match="order")])  # fmt: skip
    async def cancellable(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        await ctx.step.wait_for_event("never", event="never.sent", timeout=LONG)
        return {"tag": ctx.payload["tag"], "a": a}

    # -- failed for good, its failure handler ----------------------------------------------
    @job("doomed", queue="work", retries=0, on_failure="doomed_handler")
    async def doomed(ctx: RunContext) -> None:
        await effect(ctx, "a")
        raise NonRetriableError("card declined")

    @job("doomed_handler", queue="work")
    async def doomed_handler(ctx: RunContext) -> dict[str, Any]:
        failed = ctx.payload
        tag = failed["payload"]["tag"]

        async def fn() -> str:
            await ctx.state.incr(f"fx:{tag}:handled")
            return f"handled-{tag}"

        handled = await ctx.step.run("handle", fn)
        return {"handled": handled, "job": failed["job"], "error": failed["error"]["message"]}

    # -- leased by a SIGKILLed worker -------------------------------------------------------
    @job("crashy", queue="crash")
    async def crashy(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        b = await effect(ctx, "b")
        h = await held(ctx)
        c = await effect(ctx, "c")
        return {"tag": ctx.payload["tag"], "a": a, "b": b, "held": h, "c": c}

    @job("tenant_sync", queue="flow",
             concurrency=[Concurrency(limit=1, key="tenant")])  # fmt: skip
    async def tenant_sync(ctx: RunContext) -> dict[str, Any]:
        h = await held(ctx)
        c = await effect(ctx, "c")
        return {"tag": ctx.payload["tag"], "tenant": ctx.payload["tenant"], "held": h, "c": c}

    @job("limited_job", queue="limited")
    async def limited_job(ctx: RunContext) -> dict[str, Any]:
        h = await held(ctx)
        c = await effect(ctx, "c")
        return {"tag": ctx.payload["tag"], "held": h, "c": c}

    # -- queued, scheduled, paused, flow control at start ---------------------------------
    @job("simple", queue="idle")
    async def simple(ctx: RunContext) -> dict[str, Any]:
        a = await effect(ctx, "a")
        b = await effect(ctx, "b")
        return {"tag": ctx.payload["tag"], "a": a, "b": b}

    @job("paused_job", queue="paused")
    async def paused_job(ctx: RunContext) -> dict[str, Any]:
        return {"tag": ctx.payload["tag"], "a": await effect(ctx, "a")}

    @job("throttled", queue="idle",
             throttle=Throttle(limit=1, period=THROTTLE_S, key="acct"))  # fmt: skip
    async def throttled(ctx: RunContext) -> dict[str, Any]:
        return {"tag": ctx.payload["tag"], "a": await effect(ctx, "a")}

    @job("debounced", queue="idle",
             debounce=Debounce(period=SHORT, key="doc", timeout=4 * SHORT))  # fmt: skip
    async def debounced(ctx: RunContext) -> dict[str, Any]:
        return {"tag": ctx.payload["tag"], "n": ctx.payload["n"], "a": await effect(ctx, "a")}

    @job("throttled_w", queue="work", throttle=Throttle(limit=1, period=60, key="acct"))
    async def throttled_w(ctx: RunContext) -> dict[str, Any]:
        """Taken while the fixture is made: its start is in the throttle's window log."""
        return {"tag": ctx.payload["tag"], "a": await effect(ctx, "a")}

    @job("rolling", queue="rollout")
    async def rolling(ctx: RunContext) -> dict[str, Any]:
        """Handed back by a worker that does not register it (make_fixture.py)."""
        return {"tag": ctx.payload["tag"], "a": await effect(ctx, "a")}

    @job("singleton_job", queue="idle", singleton=Singleton(key="acct", mode="skip"))
    async def singleton_job(ctx: RunContext) -> dict[str, Any]:
        return {"tag": ctx.payload["tag"], "a": await effect(ctx, "a")}

    @job("rated", queue="idle", rate_limit=RateLimit(limit=2, period=3600, key="user"))
    async def rated(ctx: RunContext) -> dict[str, Any]:
        return {"tag": ctx.payload["tag"], "a": await effect(ctx, "a")}

    @job("on_signup", queue="idle", on_event="user.signup")
    async def on_signup(ctx: RunContext) -> dict[str, Any]:
        user = ctx.event.data["user"] if ctx.event is not None else None
        return {"tag": ctx.payload["tag"], "user": user, "a": await effect(ctx, "a")}

    @job("plain_job", queue="work")
    def plain_job(ctx: SyncRunContext) -> dict[str, Any]:
        tag = ctx.payload["tag"]

        def fn() -> str:
            ctx.state.incr(f"fx:{tag}:a")
            return f"a-{tag}"

        return {"tag": tag, "a": ctx.step.run("a", fn)}

    # -- schedules ---------------------------------------------------------------------------
    @job("ticker", queue="idle")
    async def ticker(ctx: RunContext) -> dict[str, Any]:
        return {"schedule": ctx.schedule, "payload": ctx.payload}

    @job("yearly", queue="idle", cron="0 0 1 1 *")  # a decorator schedule (origin job)
    async def yearly(ctx: RunContext) -> dict[str, Any]:
        return {"schedule": ctx.schedule}

    return app


def _from_env() -> StackShift:
    url = os.environ.get("STACKSHIFT_FIXTURE_REDIS_URL", "redis://localhost:6379/0")
    namespace = os.environ.get("STACKSHIFT_FIXTURE_NAMESPACE", NAMESPACE)
    hold = os.environ.get("STACKSHIFT_FIXTURE_HOLD") == "1"
    without = [j for j in os.environ.get("STACKSHIFT_FIXTURE_WITHOUT", "").split(",") if j]
    if os.environ.get("STACKSHIFT_FIXTURE_CLUSTER") == "1":
        from redis.asyncio.cluster import RedisCluster

        client = RedisCluster.from_url(url)
        return make_app(redis=client, namespace=namespace, hold=hold, without=without)
    return make_app(url, namespace=namespace, hold=hold, without=without)


app = _from_env()
"""The app worker processes load (`stackshift-worker tests.upgrade.releases.6707af1.jobs:app`)."""
