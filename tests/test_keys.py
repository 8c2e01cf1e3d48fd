"""Key names read back unambiguously whatever characters their parts hold (issue 23,
defect 1): every argument but the last part of a key is escaped, in keys.py for Python
and in the Lua table K it renders. Before, `idem:a:b:c` was both job `a` with key `b:c`
and job `a:b` with key `c`: the second start returned the first job's run."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from helpers import namespace_keys, wait_for

from stackshift_redis import Concurrency, RunContext, StackShift
from stackshift_redis._core.keys import SHAPES, STATUSES, Keys, escape, parse
from stackshift_redis._core.luasrc import lua_keys

# separators and escapes in every position: ':' splits parts, '%' starts an escape
TRICKY = ["a", "a:b", "a%b", "%3A", "a%3Ab", "%253A", ":", "::", "", "%", "a:ready:b", "stream",
          "x:thr:y", "w", "0:k", "a:b:c"]  # fmt: skip


def _values(part: str) -> list[str]:
    return list(STATUSES) if part == "{status}" else TRICKY


def _combinations(shape: str) -> list[tuple[str, ...]]:
    """Every tricky value in every argument (the others plain), and every pair of tricky
    values for shapes with up to two arguments."""
    parts = [p for p in SHAPES[shape] if p.startswith("{")]
    plain = tuple("x" if p != "{status}" else "failed" for p in parts)
    out = {plain}
    for i, part in enumerate(parts):
        for value in _values(part):
            out.add((*plain[:i], value, *plain[i + 1 :]))
    if len(parts) == 2:
        out |= set(itertools.product(*(_values(p) for p in parts)))
    return sorted(out)


def test_every_part_of_every_shape_reads_back() -> None:
    k = Keys("ns:with:colons")
    seen: dict[str, tuple[str, tuple[str, ...]]] = {}
    for shape in SHAPES:
        for args in _combinations(shape):
            key = k.render(shape, *args)
            assert parse(k.prefix, key) == (shape, args), (shape, args, key)
            other = seen.setdefault(key, (shape, args))
            assert other == (shape, args), f"{key} is both {other} and {(shape, args)}"
    assert len(seen) > 1000


def test_the_reported_collision_is_gone() -> None:
    k = Keys("shop")
    assert k.idem("a", "b:c") != k.idem("a:b", "c")
    # a queue named like another queue's ready set of a group named like a literal
    assert k.stream("a:ready") != k.ready("a", "stream")
    assert k.throttle("a:thr", "b") != k.throttle("a", "thr:b")
    assert k.event_log("e:w:s") != k.event_waiters("e", "s", "log")


def test_names_without_separators_render_as_before() -> None:
    """Nearly every existing key keeps its name: only a part with ':' or '%' changes."""
    k = Keys("shop")
    for shape, parts in SHAPES.items():
        args = ["failed" if p == "{status}" else f"n.{i}_x-y" for i, p in enumerate(parts)]
        args = [a for a, p in zip(args, parts, strict=True) if p.startswith("{")]
        it = iter(args)
        before = k.prefix + ":".join(next(it) if p.startswith("{") else p for p in parts)
        assert k.render(shape, *args) == before, shape
    assert k.idem("job", "order:o_1") == "ss:{shop}:idem:job:order:o_1"  # the last part
    assert k.idx_job_status("a:b", "failed") == "ss:{shop}:idxj:a:b:failed"  # status after
    assert escape("a:b%c") == "a%3Ab%25c"


async def test_lua_renders_the_same_keys(app: StackShift) -> None:
    k: Keys = app._core.keys
    lua = lua_keys() + "\nreturn K[ARGV[1]](ARGV[2], unpack(ARGV, 3))"
    for shape in SHAPES:
        for args in _combinations(shape)[:40]:
            rendered = await app.redis.eval(lua, 1, k.run("x"), shape, k.prefix, *args)
            assert rendered.decode() == k.render(shape, *args), (shape, args)


async def test_jobs_whose_names_differ_by_a_colon_keep_their_own_runs(app: StackShift) -> None:
    app.job("a", lambda ctx: None, queue="k")
    app.job("a:b", lambda ctx: None, queue="k")
    first = await app.start("a", {"p": 1}, idempotency_key="b:c")
    second = await app.start("a:b", {"q": 1}, idempotency_key="c")
    assert not second.deduplicated and second.id != first.id
    info = await app.get_run(second.id)
    assert info is not None and info.job == "a:b" and info.payload == {"q": 1}
    again = await asyncio.gather(*(app.start("a:b", idempotency_key="c") for _ in range(20)))
    assert {r.id for r in again} == {second.id} and all(r.deduplicated for r in again)
    found_a = await app.find_run("a", "b:c")
    found_ab = await app.find_run("a:b", "c")
    assert found_a is not None and found_a.id == first.id
    assert found_ab is not None and found_ab.id == second.id


async def test_names_with_colons_work_end_to_end(app: StackShift, running_worker: Any) -> None:
    """A queue, a job with flow control and an event whose names hold ':' (their keys are
    escaped in Python and in Lua alike)."""

    async def waiter(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event("w", event="order:paid", match={"id": ctx.payload})
        return evt.data if evt else None

    app.queue("q:1", concurrency=2)
    app.job("billing:waiter", waiter, queue="q:1")
    app.job("billing:limited", lambda ctx: ctx.payload, queue="q:1",
            concurrency=[Concurrency(1, key="t")])  # fmt: skip
    w = await app.start("billing:waiter", 7)
    limited = await app.start_many("billing:limited", [{"t": "x:y", "n": i} for i in range(4)])
    running_worker(app, queues=["q:1"])
    assert [await r.result(timeout=10) for r in limited] == [{"t": "x:y", "n": i} for i in
                                                               range(4)]  # fmt: skip
    await wait_for(lambda: _is(app, w.id, "waiting"), timeout=10)
    sent = await app.send_event("order:paid", {"id": 7})
    assert sent.resumed == [w.id]
    assert await w.result(timeout=10) == {"id": 7}
    keys = [key.decode() for key in await namespace_keys(app)]
    assert not [key for key in keys if ":q:1:" in key or ":order:paid:" in key], keys
    assert any(":q:q%3A1:" in key for key in keys)
    assert any(":ev:order%3Apaid:" in key for key in keys)


async def _is(app: StackShift, run_id: str, status: str) -> bool:
    return bool(await app.run(run_id).status() == status)


@pytest.mark.parametrize("name", ["a%b", "a b", "a/b"])
def test_names_stay_validated(app: StackShift, name: str) -> None:
    from stackshift_redis import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        app.job(name, lambda ctx: None)
