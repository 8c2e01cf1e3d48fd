"""Parking without a timing guess (stackshift_redis/_attempt/quiescence.py): a run parks
only when every branch its handler awaits is blocked on a durable wait, decided from the
tasks' state. Unit tests on plain asyncio (no Redis), a Hypothesis model over random
handler shapes, and a run on real Redis whose gather branch does a plain await."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from helpers import wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from stackshift_redis import RunContext, StackShift
from stackshift_redis._attempt.quiescence import check


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_the_private_asyncio_attributes_it_reads_exist() -> None:
    async def main() -> None:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(asyncio.wait_for(fut, 10))
        await _turns()
        assert hasattr(task, "_fut_waiter") and hasattr(task, "_callbacks")
        assert hasattr(asyncio.gather(task), "_children")
        assert hasattr(asyncio.get_running_loop(), "_ready")
        task.cancel()

    asyncio.run(main())
    assert sys.version_info[:2] <= (3, 13), "re-check quiescence.py's private attributes"


async def test_gather_of_waits_is_blocked_and_a_plain_branch_is_not() -> None:
    loop = asyncio.get_running_loop()
    waits = [loop.create_future() for _ in range(2)]
    timer_done = asyncio.Event()

    async def plain() -> None:
        await asyncio.sleep(1.0)  # still pending at the first check, even after a stall
        timer_done.set()
        await waits[1]

    async def handler() -> None:
        await asyncio.gather(waits[0], plain())

    root = asyncio.create_task(handler())
    await _turns()
    blocked, watch = check(root, waits)
    assert not blocked and watch is not None  # the branch's timer is the thing to watch
    await timer_done.wait()
    await _turns()
    assert check(root, waits) == (True, None)
    for w in waits:
        w.set_result(None)
    await root


@pytest.mark.parametrize("shape", ["wait", "taskgroup", "wait_for", "direct"])
async def test_other_ways_to_await_branches(shape: str) -> None:
    loop = asyncio.get_running_loop()
    wait = loop.create_future()
    go = asyncio.Event()

    async def branch() -> None:
        await go.wait()  # a plain await until the test says go
        await wait

    async def handler() -> None:
        if shape == "wait":
            await asyncio.wait([asyncio.create_task(branch())])
        elif shape == "taskgroup":
            async with asyncio.TaskGroup() as tg:
                tg.create_task(branch())
        elif shape == "wait_for":
            await asyncio.wait_for(branch(), 10)
        else:
            await branch()

    root = asyncio.create_task(handler())
    await _turns()
    assert not check(root, [wait])[0]
    go.set()
    await _turns(5)
    assert check(root, [wait]) == (True, None)
    wait.set_result(None)
    await _turns(5)
    assert not check(root, [wait])[0]  # done, or about to be
    await root


async def test_a_branch_that_just_ended_keeps_asyncio_wait_from_looking_blocked() -> None:
    loop = asyncio.get_running_loop()
    wait = loop.create_future()
    quick = loop.create_future()

    async def handler() -> None:
        await asyncio.wait([wait, asyncio.ensure_future(quick)])

    root = asyncio.create_task(handler())
    await _turns()
    quick.set_result(None)  # its done callbacks are scheduled, not run yet
    assert not check(root, [wait])[0]
    wait.set_result(None)
    await root


# A model: branches made of plain awaits (timers), steps (plain awaits too: Parking counts
# them as busy, here they are timers) and waits; whenever `check` says blocked, every
# branch still running must be at a wait, whatever the interleaving of timers.
Op = st.one_of(st.tuples(st.just("plain"), st.integers(0, 3)), st.just(("wait", 0)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(Op, min_size=1, max_size=4), min_size=1, max_size=4),
       st.sampled_from(["gather", "wait", "taskgroup"]))  # fmt: skip
def test_model_blocked_means_every_branch_is_at_a_wait(
    branches: list[list[tuple[str, int]]], style: str
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        at_wait: dict[int, bool] = {}

        async def branch(i: int, ops: list[tuple[str, int]]) -> None:
            for kind, ms in ops:
                at_wait[i] = kind == "wait"
                if kind == "wait":
                    fut: asyncio.Future[None] = loop.create_future()
                    waits.append(fut)
                    await fut
                else:
                    await asyncio.sleep(ms / 1000)
            at_wait[i] = True  # finished: nothing in flight

        async def handler() -> None:
            coros = [branch(i, ops) for i, ops in enumerate(branches)]
            if style == "gather":
                await asyncio.gather(*coros)
            elif style == "wait":
                await asyncio.wait([asyncio.create_task(c) for c in coros])
            else:
                async with asyncio.TaskGroup() as tg:
                    for c in coros:
                        tg.create_task(c)

        root = asyncio.create_task(handler())
        for turn in range(2000):
            pending = [w for w in waits if not w.done()]
            blocked, _ = check(root, pending)
            if blocked:
                assert all(at_wait.get(i, False) for i in range(len(branches))), at_wait
                for w in pending:  # settle the waits: the branches go on
                    w.set_result(None)
            if root.done():
                break
            await asyncio.sleep(0 if turn % 2 else 0.0005)
        else:
            raise AssertionError("the handler did not finish")
        await root

    asyncio.run(main())


async def test_a_gather_branch_in_a_plain_await_is_not_cut_off(
    app: StackShift, running_worker: Any
) -> None:
    plain: list[int] = []

    @app.job("j")
    async def j(ctx: RunContext) -> Any:
        async def branch() -> int:
            plain.append(1)
            await asyncio.sleep(0.3)  # not a step: formerly cut off by the park
            return int(await ctx.step.run("after", lambda: 5))

        ev, got = await asyncio.gather(ctx.step.wait_for_event("w", "go", {"id": 1}), branch())
        return [ev.data if ev else None, got]

    run = await app.start("j")
    running_worker(app)
    await wait_for(lambda: _waiting(app, run.id), 10)
    info = await app.get_run(run.id)
    assert info is not None and "after" in info.steps  # recorded before the run parked
    await app.send_event("go", {"id": 1, "v": 2})
    assert await run.result(timeout=10) == [{"id": 1, "v": 2}, 5]
    assert plain == [1, 1]  # the handler ran twice (parked, resumed), each branch to its end


async def _waiting(app: StackShift, run_id: str) -> bool:
    info = await app.get_run(run_id)
    return info is not None and info.status.value == "waiting"
