"""An app that `stackshift-worker tests.jobs_for_tests:app` subprocesses load in tests.

Configured from the environment: REDIS_URL, STACKSHIFT_NAMESPACE and
STACKSHIFT_MAX_DELIVERIES. Jobs record what they observe in plain Redis keys named by
`obs_key(namespace, name)`, so the test process can assert on them. The helpers at the
bottom start and stop worker subprocesses (they are used by the tests, not by workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from redis.asyncio.cluster import RedisCluster

from stackshift_redis import Concurrency, NonRetriableError, RunContext, StackShift
from stackshift_redis.hooks import AttemptInput, Hook

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = os.environ.get("STACKSHIFT_NAMESPACE", "default")

_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
if os.environ.get("STACKSHIFT_TEST_CLUSTER") == "1":
    _server: dict[str, Any] = {"redis": RedisCluster.from_url(_URL)}
else:
    _server = {"redis_url": _URL}
app = StackShift(
    **_server,
    namespace=NAMESPACE,
    max_deliveries=int(os.environ.get("STACKSHIFT_MAX_DELIVERIES", "5")),
)
app.queue("recovery", visibility_timeout=2)
app.queue("long", visibility_timeout=1)
app.queue("limited", concurrency=3, visibility_timeout=2)
app.queue("poison", visibility_timeout=1)
app.queue("cli", visibility_timeout=30)
app.queue("doomed", visibility_timeout=1)
app.queue("handlers", visibility_timeout=2)
app.queue("ordered", visibility_timeout=5)
app.queue("pause", visibility_timeout=1)
app.queue("sched", visibility_timeout=5)
app.queue("flow", visibility_timeout=2)
app.queue("fanout", visibility_timeout=1)
# per-key concurrency (tests/test_flow_workers.py registers the same options in the test
# process: flow-control rules are resolved by the process that starts the run)
KEYED_OPTIONS: dict[str, Any] = {"queue": "flow", "concurrency": [Concurrency(2, key="k")]}

# INCR a "current" counter and keep its maximum in another key, atomically.
_ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""


def obs_key(namespace: str, name: str) -> str:
    """The Redis key where jobs of `namespace` record the observation `name`."""
    return f"obs:{{{namespace}}}:{name}"


async def observed(app: StackShift, name: str) -> int:
    """The count jobs of `app`'s namespace recorded under `name`."""
    return int(await app.redis.get(obs_key(app.namespace, name)) or 0)


def _obs(name: str) -> str:
    return obs_key(NAMESPACE, name)


@app.job("two_steps", queue="recovery")
async def two_steps(ctx: RunContext) -> str:
    """Step A is quick; step B hangs on its first execution (the test kills the worker)."""

    async def step_a() -> str:
        await app.redis.incr(_obs("a"))
        return "a"

    async def step_b() -> str:
        n = await app.redis.incr(_obs("b"))
        await app.redis.set(_obs("b_pid"), os.getpid())
        if n == 1:
            await asyncio.sleep(60)
        return "b"

    a = await ctx.step.run("A", step_a)
    b = await ctx.step.run("B", step_b)
    return str(a) + str(b)


@app.job("long_run", queue="long", retries=0)
async def long_run(ctx: RunContext) -> str:
    """Runs `payload` seconds, counting its executions."""
    await app.redis.incr(_obs("execs"))
    await app.redis.rpush(_obs("pids"), os.getpid())
    await asyncio.sleep(float(ctx.payload))
    return "long"


@app.job("hold", queue="limited")
async def hold(ctx: RunContext) -> int:
    """Holds a slot of the limited queue for a while, tracking concurrent executions."""
    await app.redis.eval(_ENTER, 2, _obs("current"), _obs("max"))
    try:
        await asyncio.sleep(0.3)
    finally:
        await app.redis.decr(_obs("current"))
    await app.redis.incr(_obs("held"))
    return int(ctx.payload)


@app.job("crash", queue="poison")
async def crash(ctx: RunContext) -> None:
    """Kills its worker process, every time."""
    await app.redis.incr(_obs("crashes"))
    os._exit(1)


@app.job("sleepy", queue="cli", retries=0)
async def sleepy(ctx: RunContext) -> str:
    """Signals it started, then sleeps `payload` seconds."""
    await app.redis.incr(_obs("started"))
    await asyncio.sleep(float(ctx.payload))
    await app.redis.incr(_obs("finished"))
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
    await app.redis.incr(_obs("quick"))
    return ctx.payload


@app.job("keyed", **KEYED_OPTIONS)
async def keyed(ctx: RunContext) -> int:
    """Holds a slot of its key for a while, tracking concurrent executions per key; with
    payload hang=1 its first execution records its pid and hangs (the test kills it)."""
    k = ctx.payload["k"]
    if ctx.payload.get("hang") and await app.redis.incr(_obs("hangs")) == 1:
        await app.redis.set(_obs("hang_pid"), os.getpid())  # holds its slot, uncounted
        await asyncio.sleep(60)
    n = await app.redis.eval(_ENTER, 2, _obs(f"cur:{k}"), _obs(f"max:{k}"))
    try:
        await asyncio.sleep(0.1)
    finally:
        await app.redis.decr(_obs(f"cur:{k}"))
    await app.redis.incr(_obs("keyed_done"))
    return int(n)


class _KillOnFail(Hook):
    """SIGKILLs this worker when an attempt of `doomed` has failed for good, before the
    script that records the failure (and starts the failure handler) is sent."""

    def finished(self, inp: AttemptInput, outcome: str, error: BaseException | None) -> None:
        if inp.job == "doomed" and outcome == "failed":
            os.kill(os.getpid(), signal.SIGKILL)


if os.environ.get("STACKSHIFT_KILL_ON_FAIL") == "1":
    app.add_hook(_KillOnFail())


@app.job("doomed", queue="doomed", retries=0, on_failure="doomed_handler")
async def doomed(ctx: RunContext) -> None:
    """Fails for good, every time."""
    await app.redis.incr(_obs("doomed"))
    raise NonRetriableError("card declined")


@app.job("doomed_handler", queue="handlers")
async def doomed_handler(ctx: RunContext) -> None:
    """The failure handler of `doomed`: records which run it handled."""
    await app.redis.rpush(_obs("handled"), ctx.payload["run_id"])


@app.job("ordered", queue="ordered")
async def ordered(ctx: RunContext) -> int:
    """Notes its payload's `i` (and its pid) when it starts, then sleeps `s` seconds."""
    await app.redis.rpush(_obs("order"), ctx.payload["i"])
    await app.redis.rpush(_obs("order_pids"), os.getpid())
    await asyncio.sleep(ctx.payload.get("s", 0.01))
    await app.redis.incr(_obs("ordered_done"))
    return int(ctx.payload["i"])


@app.job("paused_steps", queue="pause", retries=0)
async def paused_steps(ctx: RunContext) -> str:
    """Step A, then a plain (not durable) wait during which the test pauses the worker,
    then optionally progress, then step B. Each step counts its side effects."""

    async def side_effect(name: str) -> str:
        await app.redis.incr(_obs(name))
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
        await app.redis.rpush(_obs("ticks"), round(at.timestamp() * 1000))
    await app.redis.sadd(_obs("tick_pids"), os.getpid())
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
        await app.redis.incr(_obs("fan_slow"))
        await asyncio.sleep(float(os.environ.get("FAN_SLOW", "0")))
        return 1

    invokes = (ctx.step.invoke(f"c{i}", "fan_child", i) for i in range(3))
    return list(await asyncio.gather(ctx.step.run("slow", slow), *invokes))


# helpers for the tests (not used by the workers)
def spawn_worker(
    redis_url: str,
    namespace: str,
    *args: str,
    log: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
    target: str = "tests.jobs_for_tests:app",
) -> subprocess.Popen[bytes]:
    """Start `stackshift-worker target args...` for `namespace` (cwd: the repository)."""
    full_env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "STACKSHIFT_NAMESPACE": namespace,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "stackshift_redis.cli", target, *args],
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=log if log is not None else subprocess.DEVNULL,
    )


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL and reap every process still running."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(10)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The process's exit code once it exits within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    return proc.poll()
