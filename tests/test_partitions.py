"""Partitions (issue 28), the layer every later step builds on: the tags, run ids that name
their partition, routing by name, and the partition count recorded at first use."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from helpers import namespace_keys
from redis.crc import key_slot

from stackshift_redis import Concurrency, InvalidArgumentError, RunContext, StackShift, Throttle
from stackshift_redis._core import layout
from stackshift_redis._core.keys import Keys, parse
from stackshift_redis._core.partitions import (
    check_partitions,
    name_route,
    partition_of,
    partition_tags,
    route,
)
from stackshift_redis._core.records import new_run_id
from stackshift_redis._core.routing import idempotency_partition


def test_one_partition_is_the_namespace_tag() -> None:
    assert partition_tags("shop", 1) == ["shop"]
    assert Keys("shop").prefix == "ss:{shop}:"


@pytest.mark.parametrize("count", [2, 3, 4, 6, 8, 64, 256])
def test_each_partition_tag_lies_in_its_own_slot_range(count: int) -> None:
    tags = partition_tags("shop", count)
    assert len(set(tags)) == count
    for p, tag in enumerate(tags):
        assert tag.startswith(f"shop/{p}.")
        slot = key_slot(Keys("shop", tag).run("x").encode())
        assert p * 16384 // count <= slot < (p + 1) * 16384 // count
    assert partition_tags("shop", count) == tags  # the same in every process


def test_a_partition_key_reads_back_to_its_shape() -> None:
    keys = Keys("shop", partition_tags("shop", 4)[2])
    assert keys.prefix.startswith("ss:{shop/2.")
    assert parse(keys.prefix, keys.idem("job:a", "k:1")) == ("idem", ("job:a", "k:1"))


def test_run_ids_name_their_partition() -> None:
    plain = new_run_id()
    assert len(plain) == 24 and partition_of(plain, 4) == 0
    for p in range(4):
        rid = new_run_id(p)
        assert rid.endswith(f"-{p}") and partition_of(rid, 4) == p
        assert partition_of(rid, 1) == 0
    assert new_run_id(3) > plain  # ids still sort by creation time
    for foreign in ["x", "run-1", "0" * 24 + "-9", "0" * 24 + "-a", "0" * 24 + "-"]:
        assert partition_of(foreign, 4) == 0


def test_routing_is_stable_and_spreads() -> None:
    assert route("customer:42", 8) == route("customer:42", 8)
    counts = [0] * 8
    for i in range(8000):
        counts[route(f"customer:{i}", 8)] += 1
    assert min(counts) > 800


@pytest.mark.parametrize("bad", [0, -1, 257, 1.5, "4", True, None])
def test_a_bad_partition_count_is_refused(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        check_partitions(bad)


async def test_state_lives_on_the_partition_of_its_name(
    make_app: Callable[..., StackShift],
) -> None:
    app = make_app(partitions=4)
    ns = app._core
    names = [f"counter:{i}" for i in range(16)]
    for name in names:
        await app.state.set(name, name)
        assert await app.state.incr(f"{name}:n", 2) == 2
    for name in names:
        assert await app.state.get(name) == name
        tag = ns.part_keys[ns.part_of_name(name)].tag
        assert await app.redis.exists(f"ss:{{{tag}}}:st:{name}") == 1
    used = {ns.part_of_name(n) for n in names}
    assert len(used) > 1
    async with app.state.lock("invoice:1", ttl=5):
        assert await app.redis.exists(ns.name_keys("invoice:1").lock("invoice:1")) == 1


async def test_the_partition_count_is_recorded_and_another_is_refused(
    make_app: Callable[..., StackShift], namespace: str
) -> None:
    four = make_app(namespace, partitions=4)
    await four.state.set("a", 1)
    before = await namespace_keys(four)
    for other in (1, 2):
        app = make_app(namespace, partitions=other)
        with pytest.raises(InvalidArgumentError, match="has 4 partition"):
            await app.state.set("b", 2)
        with pytest.raises(InvalidArgumentError, match="has 4 partition"):
            await app.state.incr("c")
    assert await namespace_keys(four) == before
    assert await make_app(namespace, partitions=4).state.get("a") == 1


async def test_a_partitioned_namespace_records_a_layout_releases_before_partitions_refuse(
    make_app: Callable[..., StackShift], namespace: str
) -> None:
    four = make_app(namespace, partitions=4)
    await four.state.set("a", 1)
    meta = await four.redis.hgetall(four._core.keys.meta())
    # the last release before partitions wrote layout 4, and a release refuses any layout
    # above its own (test_layout.py): it cannot write runs where no partitioned worker looks
    assert int(meta[b"layout"]) == layout.PARTITIONED > 4 and meta[b"partitions"] == b"4"
    assert layout.layout_for(1) == layout.LAYOUT and layout.layout_for(4) == layout.PARTITIONED


async def test_a_namespace_of_the_partitions_preview_is_given_the_partitioned_layout(
    make_app: Callable[..., StackShift], namespace: str
) -> None:
    first = make_app(namespace, partitions=4)
    meta = first._core.keys.meta()
    await first.redis.hset(meta, mapping={"layout": 4, "partitions": 4})  # the preview's
    app = make_app(namespace, partitions=4)
    await app.state.set("a", 1)  # the check migrates it: no step, the layout recorded
    assert int(await app.redis.hget(meta, "layout")) == layout.PARTITIONED
    assert await app.redis.hget(meta, "migrated_from") == b"4"
    with pytest.raises(InvalidArgumentError, match="has 4 partition"):
        await make_app(namespace, partitions=1).state.get("a")


async def test_a_namespace_of_one_partition_refuses_more(
    make_app: Callable[..., StackShift], namespace: str
) -> None:
    one = make_app(namespace, partitions=1)
    await one.state.set("a", 1)
    before = await namespace_keys(one)
    with pytest.raises(InvalidArgumentError, match="has 1 partition"):
        await make_app(namespace, partitions=4).state.set("b", 2)
    assert await namespace_keys(one) == before
    meta = await one.redis.hgetall(one._core.keys.meta())
    assert b"partitions" not in meta  # one partition writes nothing new


async def _published(app: StackShift) -> None:
    """What a starting worker publishes (definitions, their copies, registrations)."""
    await app.worker().registration.setup()


async def test_runs_go_to_the_partition_of_their_key(make_app: Callable[..., StackShift]) -> None:
    app = make_app(partitions=4)

    @app.job("plain")
    async def plain(ctx: RunContext) -> None: ...

    await _published(app)
    ns = app._core
    for key in ("customer:1", "customer:2", "customer:3"):
        handles = [await app.start("plain", i, partition_key=key) for i in range(3)]
        handles += await app.start_many("plain", [7, 8], partition_key=key)
        want = route(key, 4)
        assert {ns.part_of(h.id) for h in handles} == {want}
        for h in handles:
            assert h.id.endswith(f"-{want}")
            assert await app.redis.hget(ns.part_keys[want].run(h.id), "status") == b"queued"
            info = await app.get_run(h.id)
            assert info is not None and info.status == "queued"
    spread = {ns.part_of((await app.start("plain", i)).id) for i in range(40)}
    assert len(spread) > 1  # no key: a random partition


async def test_an_idempotency_key_is_one_run_on_one_partition(
    make_app: Callable[..., StackShift],
) -> None:
    app = make_app(partitions=4)

    @app.job("pay")
    async def pay(ctx: RunContext) -> None: ...

    await _published(app)
    first = await app.start("pay", 1, idempotency_key="order-9")
    again = await asyncio.gather(
        *(app.start("pay", 2, idempotency_key="order-9") for _ in range(5))
    )
    assert {h.id for h in again} == {first.id} and all(h.deduplicated for h in again)
    assert app._core.part_of(first.id) == idempotency_partition("pay", "order-9", 4)


async def test_runs_of_one_flow_key_share_a_partition(make_app: Callable[..., StackShift]) -> None:
    app = make_app(partitions=4)

    @app.job("sync", concurrency=Concurrency(limit=1, key="account"), rate_limit=None)
    async def sync(ctx: RunContext) -> None: ...

    @app.job("mixed", concurrency=Concurrency(limit=1, key="a"), throttle=Throttle(5, 1, key="b"))
    async def mixed(ctx: RunContext) -> None: ...

    await _published(app)
    ns = app._core
    for account in ("a1", "a2", "a3", "a4", "a5"):
        parts = {ns.part_of((await app.start("sync", {"account": account})).id) for _ in range(3)}
        assert len(parts) == 1
    before = await namespace_keys(app)
    with pytest.raises(InvalidArgumentError, match="partition_key cannot be given"):
        await app.start("sync", {"account": "a1"}, partition_key="x")
    with pytest.raises(InvalidArgumentError, match="key on different values"):
        await app.start("mixed", {"a": 1, "b": 2})
    assert await namespace_keys(app) == before
    await app.start("mixed", {"a": 1, "b": 1})  # the same value: one partition


async def test_a_lagging_copy_of_the_definitions_is_brought_up_to_date(
    make_app: Callable[..., StackShift],
) -> None:
    app = make_app(partitions=4)

    @app.job("j", priority=3)
    async def j(ctx: RunContext) -> None: ...

    await _published(app)
    ns = app._core
    revs = {await app.redis.hget(k.defs(), "#rev") for k in [ns.keys, *ns.part_keys]}
    assert revs == {b"1"}
    # a publisher that died between the namespace's definitions and their copies
    await ns.scripts.publish_defs([("j", '{"queue":"default","priority":5}', "default", "", 1)])
    assert await app.redis.hget(ns.keys.defs(), "#rev") == b"2"
    handle = await app.start("j", partition_key="k")
    info = await app.get_run(handle.id)
    assert info is not None and info.status == "queued"
    for k in ns.part_keys:
        assert await app.redis.hget(k.defs(), "#rev") == b"2"
        assert await app.redis.hget(k.defs(), "j") == b'{"queue":"default","priority":5}'


async def test_each_partition_knows_the_live_versions_and_failure_handlers(
    make_app: Callable[..., StackShift],
) -> None:
    app = make_app(partitions=4)

    @app.job("j", version=2, on_failure="h")
    async def j(ctx: RunContext) -> None: ...

    @app.job("h")
    async def h(ctx: RunContext) -> None: ...

    await _published(app)
    ns = app._core
    for k in ns.part_keys:
        assert await app.redis.zrange(k.job_versions("j"), 0, -1) == [b"2"]
        assert await app.redis.hget(k.on_failure(), "j") == b"h"
    handle = await app.start("j", partition_key="p")
    info = await app.get_run(handle.id)
    assert info is not None and info.version == 2


def test_a_braced_part_of_a_state_name_routes_it_like_a_partition_key() -> None:
    for key in ("customer:42", "a", "x{y"):
        assert name_route("{" + key + "}:balance", 8) == route(key, 8)
        assert name_route("pre{" + key + "}post", 8) == route(key, 8)
    assert name_route("{}:x", 8) == route("{}:x", 8)  # empty braces: the whole name
    assert name_route("no-braces", 8) == route("no-braces", 8)
