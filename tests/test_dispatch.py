"""The dispatch seam on real Redis: one ready path (make_ready) and one take path (take.lua).

Priority and groups are set here through the run fields the seam reads (`priority`,
`group`); the flow-control API builds on the same fields.
"""

from __future__ import annotations

from typing import Any

from stackshift_redis import StackShift
from stackshift_redis._core.records import new_run_id
from stackshift_redis._core.scripts import StartRequest, fields_of

OPTS: dict[str, Any] = {"max_deliveries": 5, "retention_ms": 60_000}


async def _start(app: StackShift, queue: str = "q", **fields: str) -> str:
    run = (new_run_id(), None, app.serializer.dumps(None))
    request = StartRequest(job="j", queue=queue, idem_ttl_ms=1000, fields=fields_of(fields))
    [(run_id, _, _)] = await app._core.scripts.start(request, [run])
    return run_id


async def _take(app: StackShift, n: int, queue: str = "q") -> list[str]:
    reply = await app._core.scripts.take([(queue, 30_000)], n, **OPTS)
    return [t.run_id for t in reply.taken]


async def test_higher_priority_first_fifo_within_a_level(app: StackShift) -> None:
    low = [await _start(app, priority="-5") for _ in range(3)]
    mid = [await _start(app) for _ in range(3)]
    high = [await _start(app, priority="100") for _ in range(2)]
    assert await _take(app, 5) == high + mid
    assert await _take(app, 10) == low


async def test_groups_take_turns(app: StackShift) -> None:
    noisy = [await _start(app, group="noisy") for _ in range(50)]
    quiet = await _start(app, group="quiet")
    first = await _take(app, 2)
    assert first == [noisy[0], quiet]
    assert await _take(app, 100) == noisy[1:]
    assert await app.redis.exists(app._core.keys.ring("q")) == 0


async def test_paused_queue_gives_nothing_and_drops_its_tickets(app: StackShift) -> None:
    run_id = await _start(app)
    await app.redis.hset(app._core.keys.queue_conf("q"), "paused", 1)
    assert await _take(app, 5) == []
    assert await app.redis.xlen(app._core.keys.stream("q")) == 0
    await app.redis.hdel(app._core.keys.queue_conf("q"), "paused")
    assert await _take(app, 5) == [run_id]


async def test_a_starved_queue_gets_a_ticket_when_a_lease_ends(app: StackShift) -> None:
    await app.redis.hset(app._core.keys.queue_conf("q"), "concurrency", 1)
    first, second = await _start(app), await _start(app)
    [taken] = (await app._core.scripts.take([("q", 30_000)], 5, **OPTS)).taken
    assert taken.run_id == first
    assert await _take(app, 5) == []  # at the limit
    assert await app.redis.xlen(app._core.keys.stream("q")) == 0
    done = app._core.scripts.complete_call(first, taken.token, app.serializer.dumps(1), 60_000)
    assert await app._core.scripts.run_batch([done]) == [1]
    assert await app.redis.xlen(app._core.keys.stream("q")) == 1  # a worker wakes for the slot
    assert await _take(app, 5) == [second]


async def test_one_take_serves_several_queues(app: StackShift) -> None:
    a = await _start(app, queue="a")
    b = await _start(app, queue="b")
    reply = await app._core.scripts.take([("a", 30_000), ("b", 30_000)], 5, **OPTS)
    assert [(t.run_id, t.queue) for t in reply.taken] == [(a, "a"), (b, "b")]
