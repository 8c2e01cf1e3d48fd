"""A failed run's stored traceback starts at the user's code, not in the library
(async handlers, plain functions run in threads, steps)."""

from __future__ import annotations

from typing import Any

from helpers import wait_for

from stackshift_redis import RunContext, StackShift


def _frames(tb: str) -> list[str]:
    return [ln for ln in tb.splitlines() if ln.strip().startswith('File "')]


async def test_tracebacks_start_at_user_code(app: StackShift, running_worker: Any) -> None:
    async def in_step(ctx: RunContext) -> None:
        def boom() -> None:
            raise ValueError("step broke")

        await ctx.step.run("boom", boom)

    def plain(ctx: Any) -> None:
        raise KeyError("plain broke")

    app.job("in_step", in_step, queue="tbq", retries=0)
    app.job("plain", plain, queue="tbq", retries=0)
    a = await app.start("in_step")
    b = await app.start("plain")
    running_worker(app)
    for run, says in ((a, "step broke"), (b, "plain broke")):
        await wait_for(lambda run=run: _failed(app, run.id), 10)
        info = await app.get_run(run.id)
        assert info is not None and info.error is not None, info
        frames = _frames(info.error["traceback"])
        assert frames and __file__ in frames[0], info.error["traceback"]
        assert says in info.error["traceback"]


async def _failed(app: StackShift, run_id: str) -> bool:
    return await app.run(run_id).status() == "failed"
