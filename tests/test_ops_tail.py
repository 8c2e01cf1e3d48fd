"""`stackshift runs tail RUN_ID`: follows a run's messages and status until it finishes;
exit 0 when it completed, 1 when it failed or was cancelled (or is unknown), 2 for bad
usage; `--topic`, `--json`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner, Result
from helpers import wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis._ops.cli import main


async def tail(app: StackShift, redis_url: str, is_cluster: bool, *args: str) -> Result:
    base = ["--redis-url", redis_url, "--namespace", app.namespace, *(["--cluster"] * is_cluster)]
    return await asyncio.to_thread(CliRunner().invoke, main, [*base, "runs", "tail", *args])


async def _status(app: StackShift, run_id: str, status: str) -> bool:
    return bool(await app.run(run_id).status() == status)


async def test_tail_follows_a_live_run_until_it_completes(
    app: StackShift, redis_url: str, is_cluster: bool, running_worker: Any
) -> None:
    @app.job("story", queue="tails")
    async def story(ctx: RunContext) -> str:
        await ctx.step.wait_for_event("go", event="go", match={"id": ctx.payload})
        for n in range(5):
            await ctx.publish({"n": n} if n % 2 else f"line {n}")
            await asyncio.sleep(0.05)
        await ctx.publish({"pct": 100}, topic="progress")
        return "told"

    run = await app.start("story", "s1")
    running_worker(app)
    await wait_for(lambda: _status(app, run.id, "waiting"), 10)
    following = asyncio.create_task(tail(app, redis_url, is_cluster, run.id))
    # the command is following the waiting run (it marks the run once it printed the status)
    await wait_for(lambda: app.redis.hexists(app._core.keys_of(run.id).run(run.id), "out"), 20)
    await app.send_event("go", {"id": "s1"})
    result = await asyncio.wait_for(following, 30)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "-- waiting" and lines[-1] == "-- completed"
    said = [line.split(" ", 3)[1:] for line in lines if not line.startswith("--")]
    assert said == [
        ["default", "#1", "line 0"], ["default", "#1", '{"n": 1}'], ["default", "#1", "line 2"],
        ["default", "#1", '{"n": 3}'], ["default", "#1", "line 4"],
        ["progress", "#1", '{"pct": 100}'],
    ]  # fmt: skip

    again = await tail(app, redis_url, is_cluster, run.id, "--topic", "progress", "--json")
    assert again.exit_code == 0
    rows = [json.loads(line) for line in again.output.splitlines()]
    assert rows[0] == {"type": "status", "status": "completed"}
    assert [(r["type"], r["topic"], r["data"]) for r in rows[1:]] == [
        ("message", "progress", {"pct": 100})
    ]
    assert rows[1]["attempt"] == 1 and rows[1]["id"] and rows[1]["at"]


async def test_tail_exits_1_for_a_failed_or_unknown_run_and_2_for_bad_usage(
    app: StackShift, redis_url: str, is_cluster: bool, running_worker: Any
) -> None:
    @app.job("doomed", queue="tails", retries=0)
    async def doomed(ctx: RunContext) -> None:
        await ctx.publish("trying")
        raise RuntimeError("no luck")

    run = await app.start("doomed")
    running_worker(app)
    await wait_for(lambda: _status(app, run.id, "failed"), 10)
    result = await tail(app, redis_url, is_cluster, run.id)  # a finished run: all, then exit
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == "-- failed" and lines[1].endswith(" default #1 trying") and len(lines) == 2
    unknown = await tail(app, redis_url, is_cluster, "0000000000000000deadbeef")
    assert unknown.exit_code == 1 and "no run 0000000000000000deadbeef" in unknown.output
    assert "Traceback" not in unknown.output
    bad = await tail(app, redis_url, is_cluster, run.id, "--topic", "no spaces")
    assert bad.exit_code == 2 and "invalid topic name" in bad.output
