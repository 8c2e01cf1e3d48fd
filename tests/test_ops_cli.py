"""The `stackshift` command against the test Redis: runs, events, queues, workers,
schedules; JSON output; exit codes (0 ok, 1 not found/refused, 2 usage); one-line errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import ROOT, namespace_keys, wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis._ops.cli import main


class Cli:
    """Runs `stackshift --redis-url URL --namespace NS ...` in a thread (it owns its loop)."""

    def __init__(self, url: str, namespace: str, cluster: bool, partitions: int = 1) -> None:
        self.base = ["--redis-url", url, "--namespace", namespace, *(["--cluster"] * cluster)]
        if partitions > 1:  # (STACKSHIFT_TEST_PARTITIONS: the command may write first)
            self.base += ["--partitions", str(partitions)]

    async def __call__(self, *args: str) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, main, [*self.base, *args])

    async def json(self, *args: str) -> Any:
        result = await self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(app: StackShift, redis_url: str, is_cluster: bool) -> Cli:
    return Cli(redis_url, app.namespace, is_cluster, app._core.partitions)


def _jobs(app: StackShift) -> None:
    async def ok(ctx: RunContext) -> dict[str, int]:
        n = await ctx.step.run("count", lambda: 3)
        return {"n": n}

    def bad(ctx: Any) -> None:
        raise RuntimeError("the card was declined")

    async def waiter(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event("pay", event="paid", match={"id": ctx.payload})
        return evt.data if evt else None

    app.job("ok", ok, queue="cliq")
    app.job("bad", bad, queue="cliq", retries=0)
    app.job("waiter", waiter, queue="cliq")


async def _status(app: StackShift, run_id: str, status: str) -> bool:
    return bool(await app.run(run_id).status() == status)


async def test_runs_list_show_and_paging(app: StackShift, cli: Cli, running_worker: Any) -> None:
    _jobs(app)
    oks = await app.start_many("ok", [None] * 3)
    bad = await app.start("bad", {"card": "4242"})
    running_worker(app)
    for r in oks:
        await r.result(timeout=10)
    await wait_for(lambda: _status(app, bad.id, "failed"))

    listed = await cli.json("runs", "list")
    assert [r["id"] for r in listed["runs"]] == [bad.id, *[r.id for r in oks[::-1]]]
    assert listed["cursor"] is None
    failed = await cli("runs", "list", "--status", "failed")
    assert failed.exit_code == 0 and bad.id in failed.output and oks[0].id not in failed.output
    first = await cli("runs", "list", "--limit", "2")
    assert f"next page: --cursor {oks[2].id}" in first.output
    rest = await cli.json("runs", "list", "--limit", "2", "--cursor", oks[2].id)
    assert [r["id"] for r in rest["runs"]] == [oks[1].id, oks[0].id]

    shown = await cli("runs", "show", bad.id)
    assert shown.exit_code == 0
    assert "the card was declined" in shown.output and "Traceback" in shown.output
    assert "4242" in shown.output and "failed" in shown.output
    detail = await cli.json("runs", "show", oks[0].id)
    assert detail["result"] == {"n": 3} and detail["steps"]["count"]["status"] == "completed"
    steps = await cli("runs", "show", oks[0].id)
    assert "count" in steps.output and "completed" in steps.output
    keyed = await app.start("ok", idempotency_key="order:o_5")
    found = await cli.json("runs", "find", "ok", "order:o_5")
    assert found["id"] == keyed.id
    nothing = await cli("runs", "find", "ok", "order:nope")
    assert nothing.exit_code == 1 and "order:nope" in nothing.output


async def test_cancel_retry_and_unknown_runs(
    app: StackShift, cli: Cli, running_worker: Any
) -> None:
    _jobs(app)
    later = await app.start("ok", delay=600)
    bad = await app.start("bad")
    running_worker(app)
    await wait_for(lambda: _status(app, bad.id, "failed"))
    cancelled = await cli("runs", "cancel", later.id)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    again = await cli("runs", "cancel", later.id)
    assert again.exit_code == 1 and "already cancelled" in again.output
    retried = await cli("runs", "retry", bad.id)
    assert retried.exit_code == 0 and "queued again" in retried.output
    await wait_for(lambda: _status(app, bad.id, "failed"))  # it fails again, as written
    info = await app.get_run(bad.id)
    assert info is not None and info.executions == 2 and info.attempts == 1  # retry: anew
    done = await app.start("ok")
    await wait_for(lambda: _status(app, done.id, "completed"))
    not_failed = await cli("runs", "retry", done.id)
    assert not_failed.exit_code == 1 and "is completed" in not_failed.output
    revived = await cli("runs", "retry", later.id)  # a cancelled run may be retried
    assert revived.exit_code == 0 and "queued again" in revived.output
    for args in (["show"], ["cancel"], ["retry"]):
        missing = await cli("runs", *args, "0000000000000000deadbeef")
        assert missing.exit_code == 1 and "Traceback" not in missing.output
        assert "0000000000000000deadbeef" in missing.output


async def test_events_send_resumes_a_waiting_run(
    app: StackShift, cli: Cli, running_worker: Any
) -> None:
    _jobs(app)
    run = await app.start("waiter", "o_9")
    running_worker(app)
    await wait_for(lambda: _status(app, run.id, "waiting"))
    listed = await cli("events", "list")
    assert run.id in listed.output and "paid" in listed.output
    before = await namespace_keys(app)
    bad = await cli("events", "send", "paid", "--data", "{oops")
    assert bad.exit_code == 2 and "not valid JSON" in bad.output
    assert await namespace_keys(app) == before
    sent = await cli.json("events", "send", "paid", "--data", '{"id": "o_9", "x": 1}', "--id", "e9")
    assert sent["resumed"] == [run.id]
    assert await run.result(timeout=10) == {"id": "o_9", "x": 1}
    dup = await cli("events", "send", "paid", "--data", '{"id": "o_9"}', "--id", "e9")
    assert dup.exit_code == 0 and "duplicate" in dup.output
    recent = await cli.json("events", "list")
    assert [e["id"] for e in recent["events"]] == ["e9"] and recent["waiting"] == []


async def test_queues_and_workers(app: StackShift, cli: Cli, running_worker: Any) -> None:
    _jobs(app)
    app.queue("cliq", concurrency=7)
    empty = await cli("queues")
    assert empty.exit_code == 0 and "no queues known" in empty.output
    assert "no workers" in (await cli("workers")).output
    await app.start("ok", delay=600)
    bad = await app.start("bad")
    worker = running_worker(app, concurrency=3)
    await wait_for(lambda: _status(app, bad.id, "failed"))
    (q,) = await cli.json("queues")
    assert (q["name"], q["scheduled"], q["failed_1m"], q["concurrency"]) == ("cliq", 1, 1, 7)
    assert q["paused"] is False and sorted(q["jobs"]) == ["bad", "ok", "waiter"]
    table = await cli("queues")
    assert "cliq" in table.output and "failed 1m" in table.output
    (w,) = await cli.json("workers")
    assert w["id"] == worker.id and w["alive"] and w["queues"] == ["cliq"]
    assert w["concurrency"] == 3 and w["pid"] is not None


async def test_usage_errors_exit_2(cli: Cli, app: StackShift) -> None:
    before = await namespace_keys(app)
    for args in (
        ["runs", "list", "--status", "lost"],
        ["runs", "list", "--cursor", "not-a-cursor"],
        ["runs", "list", "--after", "yesterday"],
        ["runs", "list", "--after", "2026-02-01", "--before", "2026-01-01"],
        ["runs", "list", "--job", "bad name!"],
        ["events", "send", "bad name!"],
        ["runs", "frobnicate"],
    ):
        result = await cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert await namespace_keys(app) == before
    nothing = await cli("runs", "list")
    assert nothing.exit_code == 0 and "has no data yet" in nothing.output


async def test_schedules_list_pause_resume_trigger(cli: Cli, app: StackShift) -> None:
    _jobs(app)
    assert "no schedules" in (await cli("schedules", "list")).output
    await app.schedules.create("nightly", job="ok", cron="0 3 * * *", payload={"k": 1})
    table = await cli("schedules", "list")
    assert table.exit_code == 0 and "nightly" in table.output and "0 3 * * *" in table.output
    paused = await cli("schedules", "pause", "nightly")
    assert paused.exit_code == 0 and "paused" in paused.output
    (info,) = await cli.json("schedules", "list")
    assert info["name"] == "nightly" and info["paused"] is True
    assert (await cli("schedules", "resume", "nightly")).exit_code == 0
    assert (await cli.json("schedules", "list"))[0]["paused"] is False
    fired = await cli("schedules", "trigger", "nightly")
    assert fired.exit_code == 0 and "triggered: run" in fired.output
    run_id = fired.output.strip().rsplit(" ", 1)[-1]
    started = await app.get_run(run_id)
    assert started is not None and started.job == "ok" and started.payload == {"k": 1}
    for verb in ("pause", "resume", "trigger"):
        missing = await cli("schedules", verb, "nope")
        assert missing.exit_code == 1 and "nope" in missing.output, (verb, missing.output)
        assert "Traceback" not in missing.output


async def test_replay_of_an_unknown_run_is_refused(cli: Cli) -> None:
    missing = await cli("runs", "replay", "0000000000000000deadbeef")
    assert missing.exit_code == 1 and "Traceback" not in missing.output


async def test_replay_from_a_step(app: StackShift, cli: Cli, running_worker: Any) -> None:
    _jobs(app)
    run = await app.start("ok")
    running_worker(app)
    assert await run.result(timeout=10) == {"n": 3}
    replayed = await cli("runs", "replay", run.id, "--from-step", "count")
    assert replayed.exit_code == 0 and "replayed as " in replayed.output, replayed.output
    new_id = replayed.output.split("replayed as ")[1].split()[0]
    assert await app.run(new_id).result(timeout=10) == {"n": 3}
    info = await app.get_run(new_id)
    assert info is not None and info.replay_of == run.id
    unknown = await cli("runs", "replay", run.id, "--from-step", "nope")
    assert unknown.exit_code in (1, 2) and "nope" in unknown.output


def test_the_console_command_reports_redis_down_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stackshift_redis._ops.cli", "--redis-url",
         "redis://127.0.0.1:1/0", "queues"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3  # the exit-code table: 3 is Redis
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in done.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "stackshift_redis._ops.cli", "--redis-url", "http://x", "queues"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert usage.returncode == 2 and "invalid --redis-url" in usage.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "list", "--status", "lost"],
        ["runs", "show"],
        ["runs", "frobnicate"],
        ["--bogus", "queues"],
        ["runs", "list", "--after", "yesterday"],
        ["runs", "list", "--job", "bad name!"],
        ["events", "send", "e", "--data", "{nope"],
        ["schedules", "pause"],
    ],
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    """Issue 23, defect 5: click printed its usage lines before the `Error:` line (4 lines;
    the README promises one). Through the real entry point, before any Redis is reached."""
    done = subprocess.run(
        [sys.executable, "-m", "stackshift_redis._ops.cli", "--redis-url",
         "redis://127.0.0.1:1/0", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "--help" in done.stderr and done.stdout == ""


async def test_queue_counters_replace_computed_counts_when_present(
    app: StackShift, cli: Cli
) -> None:
    _jobs(app)
    await app.start_many("ok", [None] * 3)
    await app.redis.hset(app._core.keys.jobs(), mapping={"ok": "cliq"})
    (computed,) = await cli.json("queues")
    assert (computed["ready"], computed["scheduled"], computed["waiting"]) == (3, 0, 0)
    # the scripts may keep per-queue counters (metrics); the listing then reads those
    for keys in app._core.part_keys:  # (each partition's, summed)
        await app.redis.hset(keys.queue_stat("cliq"), mapping={"ready": 5, "waiting": 2})
    (counted,) = await cli.json("queues")
    n = app._core.partitions
    assert (counted["ready"], counted["scheduled"], counted["waiting"]) == (5 * n, 0, 2 * n)
