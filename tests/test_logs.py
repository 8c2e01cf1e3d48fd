"""Worker logs: one line per attempt outcome (completed INFO, retry WARNING with the
error, final failure ERROR with the traceback, cancel INFO), "not registered" at ERROR;
every run line (the worker's and ctx.logger's) carries run_id, job, attempt and queue, in
the text format and as JSON fields (--log-format json); the start-up line comes only once
Redis was reached; SIGTERM names the runs it hands back."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import spawn_worker, wait_exit, wait_for

from stackshift_redis import RunContext, RunFailed, StackShift
from stackshift_redis.logs import JsonFormatter, TextFormatter

RUN_FIELDS = ("run_id", "job", "attempt", "queue")


def _run_records(caplog: pytest.LogCaptureFixture, run_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "run_id", None) == run_id]


async def test_one_line_per_outcome_with_the_run_fields(
    app: StackShift, running_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gate = asyncio.Event()

    @app.job("ok")
    async def ok(ctx: RunContext) -> int:
        ctx.logger.info("charging %s", ctx.payload)
        return 1

    @app.job("flaky", retries=1, backoff=0.01)
    async def flaky(ctx: RunContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("try again")
        return "fine"

    @app.job("doomed", retries=0)
    async def doomed(ctx: RunContext) -> None:
        raise ValueError("broken for good")

    @app.job("blocked")
    async def blocked(ctx: RunContext) -> None:
        await gate.wait()
        for _ in range(100):  # a step records the cancel flag; the next one stops
            await ctx.step.run("tick", asyncio.sleep, 0.01)

    runs = {name: await app.start(name, 7) for name in ("ok", "flaky", "doomed", "blocked")}
    ghost = await app.start("ghost", queue_name="default")  # no worker registers it
    running_worker(app, handback_limit=0.5)  # the ghost is handed back, then fails
    assert await runs["ok"].result(timeout=10) == 1
    assert await runs["flaky"].result(timeout=10) == "fine"
    with pytest.raises(RunFailed):
        await runs["doomed"].result(timeout=10)
    await wait_for(lambda: _is(runs["blocked"], "running"))
    await app.cancel(runs["blocked"].id)
    gate.set()
    await wait_for(lambda: _is(runs["blocked"], "cancelled"))
    await wait_for(lambda: _is(ghost, "failed"))

    def lines(run: Any) -> list[tuple[str, str]]:
        return [(r.levelname, r.getMessage()) for r in _run_records(caplog, run.id)]

    ok_id = runs["ok"].id
    assert lines(runs["ok"]) == [("INFO", "charging 7"), ("INFO", f"run {ok_id} (ok) completed")]
    flaky_lines = lines(runs["flaky"])
    assert [lvl for lvl, _ in flaky_lines] == ["WARNING", "INFO"]
    assert "attempt 1 failed, retrying in" in flaky_lines[0][1]
    assert flaky_lines[0][1].endswith("RuntimeError: try again")
    [(level, message)] = lines(runs["doomed"])
    assert level == "ERROR" and message.endswith("failed: ValueError: broken for good")
    failure = _run_records(caplog, runs["doomed"].id)[0]
    assert failure.exc_info is not None and failure.exc_info[1] is not None  # the traceback
    assert lines(runs["blocked"])[-1][0] == "INFO"
    assert "cancelled" in lines(runs["blocked"])[-1][1]
    # the ERROR line follows Redis's reply that failed the run: wait for it, too
    await wait_for(
        lambda: any(
            lvl == "ERROR" and "'ghost' is not registered in this worker" in msg
            for lvl, msg in lines(ghost)
        )
    )
    for record in _run_records(caplog, ok_id):
        assert {f: getattr(record, f) for f in RUN_FIELDS} == {
            "run_id": ok_id, "job": "ok", "attempt": 1, "queue": "default",
        }  # fmt: skip
    text = TextFormatter().format(_run_records(caplog, ok_id)[0])
    assert text.endswith(f"charging 7 [run_id={ok_id} job=ok attempt=1 queue=default]")
    as_json = json.loads(JsonFormatter().format(failure))
    assert as_json["run_id"] == runs["doomed"].id and as_json["job"] == "doomed"
    assert as_json["level"] == "ERROR" and "ValueError: broken for good" in as_json["traceback"]


async def _is(run: Any, status: str) -> bool:
    return bool(await run.status() == status)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_json_log_format_of_a_worker_process(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    path = tmp_path / "worker.log"
    with path.open("wb") as log:
        procs.append(spawn_worker(
            redis_url, app.namespace, "--queue", "obs", "--log-format", "json", log=log,
            target="tests.apps.observability_jobs:app",
        ))  # fmt: skip
    ok = await app.start("ok", 5, queue_name="obs")
    doomed = await app.start("doomed", queue_name="obs")
    assert await ok.result(timeout=20) == 5
    with pytest.raises(RunFailed):
        await doomed.result(timeout=10)
    await wait_for(lambda: any(e.get("level") == "ERROR" for e in _json_lines(path)))
    entries = _json_lines(path)  # every line is one JSON object
    assert any(e["message"].startswith("worker ") and "connected" in e["message"]
               for e in entries)  # fmt: skip
    fields = {"run_id": ok.id, "job": "ok", "attempt": 1, "queue": "obs"}
    mine = [e for e in entries if e.get("run_id") == ok.id]
    assert [(e["logger"], e["message"]) for e in mine] == [
        ("stackshift.run", "hello from ok"), ("stackshift.worker", f"run {ok.id} (ok) completed"),
    ]  # fmt: skip
    assert all({k: e[k] for k in fields} == fields for e in mine)
    retry, final = [e for e in entries if e.get("run_id") == doomed.id]
    assert retry["level"] == "WARNING" and "ValueError: always broken" in retry["message"]
    assert final["level"] == "ERROR" and final["attempt"] == 2
    assert "Traceback" in final["traceback"] and "always broken" in final["traceback"]


async def test_sigterm_names_the_runs_it_hands_back(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    path = tmp_path / "worker.log"
    with path.open("wb") as log:
        proc = spawn_worker(
            redis_url, app.namespace, "--queue", "obs", "--grace", "0.3", log=log,
            target="tests.apps.observability_jobs:app",
        )  # fmt: skip
        procs.append(proc)
    run = await app.start("snooze", 30, queue_name="obs")
    await wait_for(lambda: _is(run, "running"), 20)
    proc.send_signal(signal.SIGTERM)
    assert await wait_exit(proc, 15) == 0
    text = path.read_text()
    assert f"SIGTERM: finishing running attempts (running: {run.id})" in text
    assert f"handing back 1 runs cut off by the stop: {run.id}" in text
    assert await run.status() == "queued"


async def test_no_start_up_line_before_redis_is_reached(
    app: StackShift, redis_url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    path = tmp_path / "worker.log"
    with path.open("wb") as log:
        proc = spawn_worker(
            redis_url, app.namespace, "--queue", "obs", "--redis-url",
            f"redis://127.0.0.1:{closed}/0", log=log, target="tests.apps.observability_jobs:app",
        )  # fmt: skip
        procs.append(proc)
    await wait_exit(proc, 3)  # it exits, or waits for Redis: either way not "connected"
    assert "connected" not in path.read_text()
