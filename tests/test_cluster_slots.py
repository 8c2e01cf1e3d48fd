"""Every script call touches one hash slot, so it runs unchanged on Redis Cluster.

Records each `Scripts.call` / `Scripts.queue_call` (the only ways the library runs Lua)
during a workload covering starts, steps, waits, events, invoke, failures, cancel, retry,
bulk control, replay, pause and state, and checks with `redis.crc.key_slot` that all KEYS
of a call, and the namespace prefix a script derives more keys from (ARGV), map to the
namespace's slot. Runs on standalone Redis too: no cluster needed to catch a cross-slot
call. The same recorded calls are checked against each script's header: as many KEYS and
ARGV as it documents (`KEYS[3]`, and repeating forms such as `KEYS[2i-1]` or `ARGV[6+3i]`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import pytest
from helpers import wait_for
from redis.crc import key_slot

from stackshift_redis import (
    CancelOn,
    Concurrency,
    RateLimit,
    RunContext,
    RunFailed,
    Singleton,
    StackShift,
    Throttle,
)
from stackshift_redis._core.luasrc import lua_dir, script_names
from stackshift_redis._core.scripts import Scripts

Call = tuple[str, list[str], list[Any]]

# scripts the workload must reach; the rest (drop_consumer) are checked when they run
REQUIRED = {
    "start",
    "take",
    "complete",
    "fail",
    "record_step",
    "sleep",
    "promote",
    "wait_event",
    "send_event",
    "invoke",
    "cancel",
    "retry",
    "watch",
    "renew",
    "reclaim",
    "state_incr",
    "lock_extend",
    "lock_release",
    "queue_stats",
    "bulk",
    "replay",
    "pause_queue",
    "resume_queue",
    "register",
    "unregister_job",
    "upsert_schedule",
    "due_schedules",
    "fire_schedule",
    "trigger_schedule",
    "control_schedule",
    "publish",
    "follow",
    "transact",
}
SINGLE_TAG_ONLY = {"fire_schedule", "trigger_schedule"}  # one script for a tick's run
VARIABLE = {"transact"}  # KEYS and ARGV counted by an argument (the header says how)


@pytest.fixture
def script_calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every script call made while the test runs: (name, KEYS, ARGV)."""
    calls: list[Call] = []
    call, queue_call = Scripts.call, Scripts.queue_call

    async def recording_call(
        self: Scripts, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        calls.append((name, list(keys), list(args)))
        return await call(self, name, keys, args)

    async def recording_queue_call(
        self: Scripts, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> None:
        calls.append((name, list(keys), list(args)))
        await queue_call(self, pipe, name, keys, args)

    monkeypatch.setattr(Scripts, "call", recording_call)
    monkeypatch.setattr(Scripts, "queue_call", recording_queue_call)
    return calls


_FORM = re.compile(r"^(?:(\d+)\+)?(\d*)i(?:([+-])(\d+))?$")


def header_spec(name: str) -> dict[str, tuple[set[int], set[tuple[int, int]]]]:
    """{"KEYS"|"ARGV": (fixed indices, repeating (stride, offset) forms)} from a header."""
    spec: dict[str, tuple[set[int], set[tuple[int, int]]]] = {
        "KEYS": (set(), set()),
        "ARGV": (set(), set()),
    }
    for line in (lua_dir() / f"{name}.lua").read_text().splitlines():
        if not line.startswith("--"):
            break
        for kind, expr in re.findall(r"(KEYS|ARGV)\[([^\]]+)\]", line):
            expr = expr.replace(" ", "")
            if expr.isdigit():
                spec[kind][0].add(int(expr))
                continue
            m = _FORM.match(expr)
            assert m, f"{name}: cannot read {kind}[{expr}]"
            lead, stride, sign, tail = m.groups()
            offset = int(lead or 0) + (int(tail) if sign == "+" else -int(tail or 0))
            spec[kind][1].add((int(stride or 1), offset))
    return spec


def matches(spec: tuple[set[int], set[tuple[int, int]]], count: int) -> bool:
    """True when `count` items fill the fixed indices then whole repeats of the forms."""
    fixed, forms = spec
    base = max(fixed, default=0)
    assert fixed == set(range(1, base + 1)), f"fixed indices with a gap: {sorted(fixed)}"
    if not forms:
        return count == base
    stride = {s for s, _ in forms}
    assert len(stride) == 1 and len(forms) == next(iter(stride)), f"forms {forms}"
    repeats, rest = divmod(count - base, len(forms))
    covered = {s * i + o for s, o in forms for i in range(1, repeats + 1)}
    return rest == 0 and repeats >= 0 and covered == set(range(base + 1, count + 1))


@pytest.mark.parametrize("name", script_names())
def test_every_header_is_readable(name: str) -> None:
    spec = header_spec(name)
    assert spec["KEYS"][0] or spec["KEYS"][1], f"{name} documents no KEYS"
    for kind in ("KEYS", "ARGV"):
        matches(spec[kind], max(spec[kind][0], default=0))


def _slot(key: str | bytes) -> int:
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def test_keys_of_a_namespace_share_its_slot() -> None:
    from stackshift_redis._core.keys import SHAPES, Keys

    k = Keys("shop")
    slot = _slot(k.prefix)
    odd = ("key{with}braces", "{other}", "e{1}", "a,b")
    names = [
        k.render(shape, *(odd[i % len(odd)] for i in range(sum(p[0] == "{" for p in parts))))
        for shape, parts in SHAPES.items()
    ]
    assert len(names) == len(SHAPES) > 20
    assert {_slot(n) for n in names} == {slot}
    assert _slot(Keys("other").prefix) != slot  # the tag really is the namespace


async def test_every_script_call_touches_one_slot(
    app: StackShift, running_worker: Any, script_calls: list[Call]
) -> None:
    parts = app._core.partitions  # (STACKSHIFT_TEST_PARTITIONS: each call on one partition)
    app.queue("default", visibility_timeout=2)  # renew and reclaim run every ~0.67 s
    attempts: dict[str, int] = {}

    app.job("child", lambda ctx: ctx.payload * 2)

    @app.job("flow")
    async def flow(ctx: RunContext) -> Any:
        a = await ctx.step.run("a", lambda: 1)
        await ctx.publish({"a": a}, topic="steps")
        await ctx.step.sleep("nap", 0.05)
        evt = await ctx.step.wait_for_event("w", event="go", match={"id": ctx.payload})
        kid = await ctx.step.invoke("kid", job="child", payload=21)
        await ctx.step.transact("tx", _tx_all if parts == 1 else _tx_partitioned)
        await ctx.step.run("slow", asyncio.sleep, 1.0)  # outlives a renew interval
        assert evt is not None
        return a + kid + evt.data["v"]

    @app.job("flaky", retries=1, backoff=0.01)
    def flaky(ctx: RunContext) -> str:
        attempts[ctx.run_id] = attempts.get(ctx.run_id, 0) + 1
        if attempts[ctx.run_id] == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    @app.job("broken", retries=0)
    def broken(ctx: RunContext) -> str:
        attempts[ctx.run_id] = attempts.get(ctx.run_id, 0) + 1
        if attempts[ctx.run_id] == 1:
            raise RuntimeError("fails until retried by hand")
        return "fixed"

    app.job("parked", lambda ctx: None)
    one = None if parts == 1 else "k"  # with partitions a job's rules share one key
    app.job(
        "gated", lambda ctx: ctx.payload["n"], concurrency=Concurrency(1, key="k"),
        throttle=Throttle(100, 1, key=one), rate_limit=RateLimit(100, 60, key=one),
        cancel_on=CancelOn("stop", match="k"),
    )  # fmt: skip
    app.job("single", lambda ctx: None, singleton=Singleton(mode="cancel"))

    flow_run = await app.start("flow", "o1", idempotency_key="flow-o1")
    many = await app.start_many("child", [1, 2, 3], idempotency_keys=["a", "b", "a"])
    flaky_run = await app.start("flaky")
    broken_run = await app.start("broken")
    parked = await app.start("parked", delay=60)
    assert await app.cancel(parked.id) is True
    gated = [await app.start("gated", {"k": "x", "n": n}) for n in range(3)]
    doomed = await app.start("gated", {"k": "y", "n": 0})
    assert (await app.send_event("stop", {"k": "y"})).cancelled == [doomed.id]
    await app.start("single")
    await app.start("single")  # cancels the first

    running_worker(app, concurrency=4)
    await wait_for(lambda: _waits_for_event(flow_run), 10)
    sent = await app.send_event("go", {"id": "o1", "v": 100})
    assert sent.resumed == [flow_run.id]
    assert await flow_run.result(timeout=15) == 1 + 42 + 100
    assert {m.data["a"] async for m in flow_run.stream(topic="steps")} == {1}
    assert [await r.result(timeout=10) for r in many] == [2, 4, 2]
    assert [await r.result(timeout=10) for r in gated] == [0, 1, 2]
    assert await flaky_run.result(timeout=10) == "ok"
    with pytest.raises(RunFailed):
        await broken_run.result(timeout=10)
    await app.retry(broken_run.id)
    assert await broken_run.result(timeout=10) == "fixed"
    replayed = await app.replay(flow_run.id, from_step="slow")  # steps before it are copied
    assert await replayed.result(timeout=15) == 1 + 42 + 100
    assert await app.pause_queue("default") and await app.resume_queue("default")
    assert await app.cancel_runs(job="child", status="queued") == 0
    # `parked`, the gated run cancelled by its event, the singleton run replaced by the next
    assert await app.retry_runs(status=["failed", "cancelled"]) == 3

    st = app.state
    await st.set("k", {"a": 1})
    assert await st.incr("n", 2, ttl=60) == 2
    assert await st.mark("m", ttl=60) is True
    async with st.lock("L", ttl=1, wait=1):  # extended every 0.33 s: a stall keeps it
        await asyncio.sleep(1.2)  # extended by lock_extend while held
    workers, stats = await app._core.scripts.queue_stats(["default", "other"])  # metrics gauges
    assert workers == 1 and [s.queue for s in stats] == ["default", "other"]

    assert await app.unregister_job("parked") == 1
    await app.schedules.create("sched", job="child", every=1, payload=5, overlap="skip")
    await wait_for(lambda: _fired(app, "sched"), 20)  # a worker's upkeep fired a tick
    assert await (await app.schedules.trigger("sched")).result(timeout=10) == 10
    assert await app.schedules.pause("sched") and await app.schedules.resume("sched")
    assert await app.schedules.delete("sched")

    assert script_calls, "no script call was recorded"
    # the namespace's tag and its partitions' tags (with one partition: the namespace's)
    tag_slots = {_slot(k.prefix) for k in [app._core.keys, *app._core.part_keys]}
    for name, keys, args in script_calls:
        assert keys, f"{name}: a script call without KEYS cannot be routed by slot"
        slots = {_slot(key) for key in keys}
        assert len(slots) == 1 and slots <= tag_slots, f"{name} touches slots {slots}: {keys}"
        derived = [a for a in args if isinstance(a, str) and a.startswith("ss:{")]
        assert all({_slot(a)} == slots for a in derived), f"{name}: ARGV {derived}"
    for name, keys, args in script_calls:
        if name in VARIABLE:
            continue
        spec = header_spec(name)
        assert matches(spec["KEYS"], len(keys)), f"{name}: {len(keys)} KEYS vs its header"
        assert matches(spec["ARGV"], len(args)), f"{name}: {len(args)} ARGV vs its header"
    # with partitions a tick's run is started on its partition, then the schedule advances
    required = REQUIRED if parts == 1 else REQUIRED - SINGLE_TAG_ONLY | {"advance_schedule"}
    missing = required - {name for name, _, _ in script_calls}
    assert not missing, f"the workload did not exercise {sorted(missing)}"


async def _tx_all(tx: Any) -> None:
    """A transactional step that reads, writes, deletes, sends an event and starts runs."""
    await tx.incr("tx:n")
    tx.set("tx:v", {"a": 1}, ttl=60)
    tx.delete("tx:gone")
    tx.send_event("tx.done", {"k": "z"})
    tx.start("child", 4, idempotency_key="tx-child")


async def _tx_partitioned(tx: Any) -> None:
    """_tx_all with partitions: its state on one partition (one braced part). Its event
    goes to the other partitions through the outbox, and so does its keyed start ("tx-child"
    routes off {tx}'s partition at P=4: an outbox entry 'tx_start'); its unkeyed start is
    made by the commit."""
    await tx.incr("{tx}:n")
    tx.set("{tx}:v", {"a": 1}, ttl=60)
    tx.delete("{tx}:gone")
    tx.send_event("tx.done", {"k": "z"})
    tx.start("child", 4, idempotency_key="tx-child")
    tx.start("child", 4)


async def _waits_for_event(run: Any) -> bool:
    info = await run.info()  # waiting again after its sleep: for the event
    return bool(info is not None and info.status == "waiting" and "nap" in info.steps)


async def _fired(app: StackShift, name: str) -> bool:
    info = await app.schedules.get(name)
    return info is not None and info.last_run_id is not None
