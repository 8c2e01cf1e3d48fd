"""The hook seam: a hook sees every attempt and step, suspensions and outcomes, and the
fields it stores at start come back with the attempt."""

from __future__ import annotations

from typing import Any

from helpers import wait_for

from stackshift_redis import RunContext, StackShift, SyncRunContext
from stackshift_redis.hooks import AttemptInput, Hook, Proceed, StepInput


class Recorder(Hook):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    async def attempt(self, inp: AttemptInput, proceed: Proceed) -> Any:
        trace = inp.fields.get("trace")
        self.seen.append(("attempt", inp.job, inp.attempt, inp.execution, inp.resumed, trace))
        return await proceed()

    async def step(self, inp: StepInput, proceed: Proceed) -> Any:
        self.seen.append(("step", inp.name, inp.kind))
        return await proceed()

    def step_sync(self, inp: StepInput, proceed: Any) -> Any:
        self.seen.append(("step_sync", inp.name, inp.kind))
        return proceed()

    def suspended(self, inp: AttemptInput, step: str, kind: str) -> None:
        self.seen.append(("suspended", step, kind))

    def finished(self, inp: AttemptInput, outcome: str, error: BaseException | None) -> None:
        self.seen.append(("finished", inp.job, outcome, type(error).__name__ if error else None))

    def start_fields(self, job: str, queue: str) -> dict[str, str]:
        return {"trace": f"t-{job}"}


async def test_a_hook_sees_attempts_steps_and_outcomes(
    app: StackShift, running_worker: Any
) -> None:
    hook = Recorder()
    app.add_hook(hook)

    @app.job("flow")
    async def flow(ctx: RunContext) -> int:
        a: int = await ctx.step.run("a", lambda: 1)
        await ctx.step.sleep("nap", 0.05)
        return a + 1

    @app.job("plain", retries=0)
    def plain(ctx: SyncRunContext) -> None:
        ctx.step.run("s", lambda: None)
        raise RuntimeError("boom")

    run = await app.start("flow")
    failing = await app.start("plain")
    running_worker(app)
    assert await run.result(timeout=10) == 2
    await app.run(failing.id).status()

    def both_finished() -> bool:  # told after the record: after result() may return
        finished = {e[:3] for e in hook.seen if e[0] == "finished"}
        return {("finished", "plain", "failed"), ("finished", "flow", "completed")} <= finished

    await wait_for(both_finished, 20)
    flow_events = [e for e in hook.seen if "plain" not in e and e[1:2] != ("s",)]
    assert flow_events == [
        ("attempt", "flow", 1, 1, False, "t-flow"),
        ("step", "a", "run"),
        ("step", "nap", "sleep"),
        ("suspended", "nap", "sleep"),
        ("attempt", "flow", 1, 2, True, "t-flow"),  # the sleep's stored outcome: not hooked
        ("finished", "flow", "completed", None),
    ]
    assert ("step_sync", "s", "run") in hook.seen
    assert ("finished", "plain", "failed", "RuntimeError") in hook.seen


def test_a_deferred_hook_is_decided_once_at_first_use() -> None:
    from stackshift_redis.hooks import Hooks

    calls: list[str] = []
    hook = Recorder()

    def factory(result: Hook | None) -> Any:
        def make() -> Hook | None:
            calls.append("made")
            return result

        return make

    declined, accepted = Hooks(), Hooks()
    declined.defer(factory(None))
    accepted.defer(factory(hook))
    assert calls == []  # nothing is decided when it is added
    assert not declined and not declined
    assert accepted and accepted
    assert calls == ["made", "made"]  # once per chain
    assert accepted.start_fields("j", "q") == {"trace": "t-j"}
