"""Operators, round 2: bulk `runs cancel|retry` by filter (--dry-run, --yes, confirmation,
progress), `queues pause|resume`, `schedules delete`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result

from stackshift_redis import RunContext, StackShift
from stackshift_redis._ops.cli import main


class Cli:
    def __init__(self, url: str, namespace: str, cluster: bool, partitions: int = 1) -> None:
        self.base = ["--redis-url", url, "--namespace", namespace, *(["--cluster"] * cluster)]
        if partitions > 1:  # (STACKSHIFT_TEST_PARTITIONS: the command may write first)
            self.base += ["--partitions", str(partitions)]

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, main, [*self.base, *args], input=input)


@pytest.fixture
def cli(app: StackShift, redis_url: str, is_cluster: bool) -> Cli:
    return Cli(redis_url, app.namespace, is_cluster, app._core.partitions)


async def test_bulk_retry_dry_run_confirm_and_yes(app: StackShift, cli: Cli) -> None:
    def bad(ctx: RunContext) -> None:
        raise RuntimeError("down")

    app.job("bad", bad, queue="bulkq", retries=0)
    handles = await app.start_many("bad", list(range(250)))
    await app.cancel_runs(job="bad")  # cancelled runs are retriable too
    dry = await cli("runs", "retry", "--job", "bad", "--status", "cancelled", "--dry-run")
    assert dry.exit_code == 0 and dry.stdout.strip() == "250 run(s) would be retried", dry.output
    none = await cli("runs", "retry", "--job", "bad", "--dry-run")  # default: failed
    assert none.stdout.strip() == "0 run(s) would be retried"
    said_no = await cli("runs", "retry", "--job", "bad", "-s", "cancelled", input="n\n")
    assert said_no.exit_code == 1 and "not confirmed" in said_no.output
    assert "retry 250 run(s) of job 'bad'?" in said_no.output
    no_input = await cli("runs", "retry", "--job", "bad", "-s", "cancelled", input="")
    assert no_input.exit_code == 1 and "not confirmed" in no_input.output  # no terminal: no
    assert await app.run(handles[0].id).status() == "cancelled"
    done = await cli("runs", "retry", "--job", "bad", "-s", "cancelled", input="y\n")
    assert done.exit_code == 0 and "250 run(s) retried" in done.stdout, done.output
    assert "retried 250 of 250 ...\n" in done.output  # progress per batch (stderr)
    assert await app.run(handles[-1].id).status() == "queued"
    cancel = await cli("runs", "cancel", "--job", "bad", "--yes")
    assert cancel.exit_code == 0 and cancel.stdout.strip().endswith("250 run(s) cancelled")


async def test_bulk_filters_by_creation_time(app: StackShift, cli: Cli) -> None:
    app.job("later", lambda ctx: None, queue="bulkq")
    early = await app.start_many("later", [1, 2, 3])
    info = await app.get_run(early[-1].id)
    assert info is not None and info.created_at is not None
    cut = (info.created_at + timedelta(milliseconds=500)).isoformat()
    await asyncio.sleep(1.0)
    late = await app.start_many("later", [4, 5])
    before = await cli("runs", "cancel", "--job", "later", "--created-before", cut, "--dry-run")
    assert before.exit_code == 0 and before.stdout.strip() == "3 run(s) would be cancelled"
    after = await cli("runs", "cancel", "--job", "later", "--created-after", cut, "--yes")
    assert after.stdout.strip() == "2 run(s) cancelled", after.output
    assert await app.run(late[0].id).status() == "cancelled"
    assert await app.run(early[0].id).status() == "queued"


async def test_bulk_usage_errors(cli: Cli) -> None:
    for args in (
        ["runs", "cancel"],  # neither ids nor --job
        ["runs", "retry", "abc", "--job", "x"],  # both
        ["runs", "retry", "--job", "x", "--status", "running"],  # not retriable
        ["runs", "cancel", "--job", "x", "--created-after", "yesterday"],
    ):
        result = await cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


async def test_queue_pause_resume_and_schedule_delete(app: StackShift, cli: Cli) -> None:
    paused = await cli("queues", "pause", "bulkq")
    assert paused.exit_code == 0 and paused.stdout.strip() == "queue bulkq: paused"
    assert "warning: no worker or run knows queue 'bulkq'" in paused.output  # a typo shows
    again = await cli("queues", "pause", "bulkq")
    assert again.stdout.strip() == "queue bulkq: already paused"
    app.job("q", lambda ctx: None, queue="bulkq")
    assert await app.pause_queue("bulkq") is False  # paused by the command
    resumed = await cli("queues", "resume", "bulkq")
    assert resumed.stdout.strip() == "queue bulkq: resumed"
    assert (await cli("queues", "resume", "bulkq")).stdout.strip() == "queue bulkq: was not paused"
    bad = await cli("queues", "pause", "no spaces")
    assert bad.exit_code == 2 and "invalid queue name" in bad.output
    await app.schedules.create("nightly", job="q", cron="0 3 * * *")
    gone = await cli("schedules", "delete", "nightly")
    assert gone.exit_code == 0 and gone.stdout.strip() == "schedule nightly: deleted"
    missing = await cli("schedules", "delete", "nightly")
    assert missing.exit_code == 1 and "no schedule 'nightly'" in missing.output
