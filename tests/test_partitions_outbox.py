"""The outbox and its relay (partitions): what a script must do to a run on another
partition goes in its own partition's outbox, atomically, and workers' relays apply it
there at least once; every apply is idempotent, so each effect happens once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from redis.exceptions import ClusterDownError

from stackshift_redis import RunContext, StackShift
from stackshift_redis._core.scripts import Scripts
from stackshift_redis._worker import relay as relay_mod
from stackshift_redis._worker.relay import Relay
from stackshift_redis.errors import RedisUnavailableError


@pytest.fixture
def app(make_app: Callable[..., StackShift]) -> StackShift:
    app = make_app(partitions=4)

    @app.job("j")
    async def j(ctx: RunContext) -> None: ...

    return app


async def _entry(app: StackShift, part: int, **fields: bytes | str) -> None:
    await app.redis.xadd(app._core.part_keys[part].outbox(), fields)


async def test_an_entry_is_applied_on_the_run_partition_and_removed(app: StackShift) -> None:
    await app.worker().registration.setup()
    ns = app._core
    handle = await app.start("j", partition_key="k")
    there = ns.part_of(handle.id)
    source = (there + 1) % 4
    await _entry(app, source, a="cancel", run=handle.id, reason="parent cancelled")
    relay = Relay(ns, "w1")
    assert await relay.tick() == 1
    info = await app.get_run(handle.id)
    assert info is not None and info.status == "cancelled"
    assert await app.redis.xlen(ns.part_keys[source].outbox()) == 0
    assert await relay.tick() == 0 and relay.applied == 1


async def test_a_start_applied_twice_creates_one_run(app: StackShift) -> None:
    await app.worker().registration.setup()
    ns = app._core
    child = ns.new_run_id(3)
    payload = msgpack.packb({"n": 1})
    fields = dict(a="start", run=child, job="j", queue="default", payload=payload, plan="",
                  fields='{"parent":"p-0","parent_step":"s"}')  # fmt: skip
    await _entry(app, 0, **fields)
    await _entry(app, 1, **fields)  # the same entry again (a relay that died before its ack)
    assert await Relay(ns, "w1").tick() == 1
    info = await app.get_run(child)
    assert info is not None and info.status == "queued" and info.payload == {"n": 1}
    assert await app.redis.hget(ns.part_keys[3].run(child), "parent") == b"p-0"


async def test_an_entry_a_dead_relay_read_is_claimed_and_applied_once(
    app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    await app.worker().registration.setup()
    ns = app._core
    handle = await app.start("j", partition_key="k2")
    await _entry(app, 0, a="cancel", run=handle.id, reason="r")
    dead = Relay(ns, "dead")
    await dead._create_groups()
    read = await dead._read(ns.part_keys[0].outbox(), claim=False)  # read, then "killed"
    assert len(read) == 1
    live = Relay(ns, "live")
    assert await live.tick() == 0  # not idle long enough yet: left to its reader
    monkeypatch.setattr(relay_mod, "CLAIM_IDLE_MS", 0)
    live._claim_at = 0.0
    assert await live.tick() == 1
    assert await live.tick() == 0
    info = await app.get_run(handle.id)
    assert info is not None and info.status == "cancelled"
    kinds = [e["type"] for e in info.timeline]
    assert kinds.count("cancelled") == 1


async def test_an_entry_whose_apply_meets_no_redis_stays_and_is_applied_later(
    app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    await app.worker().registration.setup()
    ns = app._core
    handle = await app.start("j", partition_key="k3")
    await _entry(app, 0, a="cancel", run=handle.id, reason="r")
    relay = Relay(ns, "w1")
    original = Scripts.apply_outbox

    async def unreachable(*args: object, **kwargs: object) -> bool:
        raise RedisUnavailableError("Redis unavailable: Connection refused")

    monkeypatch.setattr(Scripts, "apply_outbox", unreachable)
    with pytest.raises(RedisUnavailableError):  # the upkeep loop logs one line and retries
        await relay.tick()
    assert await app.redis.xlen(ns.part_keys[0].outbox()) == 1  # kept: not a damaged entry
    monkeypatch.setattr(Scripts, "apply_outbox", original)
    relay._claim_at = 0.0  # its own unacknowledged entries are read again
    assert await relay.tick() == 1
    info = await app.get_run(handle.id)
    assert info is not None and info.status == "cancelled"
    assert await app.redis.xlen(ns.part_keys[0].outbox()) == 0


async def test_an_entry_whose_partition_answers_clusterdown_is_kept_and_applied_later(
    app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    await app.worker().registration.setup()
    ns = app._core
    handle = await app.start("j", partition_key="k3")
    source = (ns.part_of(handle.id) + 1) % 4
    await _entry(app, source, a="cancel", run=handle.id, reason="r")

    async def cluster_down(*args: Any, **kwargs: Any) -> Any:  # a master restarting
        raise ClusterDownError("The cluster is down")

    relay = Relay(ns, "w1")
    with monkeypatch.context() as m:
        m.setattr(app.redis, "evalsha", cluster_down)  # every script call; reads go on
        with pytest.raises(RedisUnavailableError, match="cluster is down"):
            await relay.tick()  # the worker's upkeep loop: one line, then backoff
    assert await app.redis.xlen(ns.part_keys[source].outbox()) == 1  # not dropped
    relay._claim_at = 0.0  # its own unacknowledged entries are read again
    assert await relay.tick() == 1
    info = await app.get_run(handle.id)
    assert info is not None and info.status == "cancelled"
    assert await app.redis.xlen(ns.part_keys[source].outbox()) == 0
