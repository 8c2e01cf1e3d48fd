"""Bad input at every public entry point (issue 23): each of the inputs below gets a clear
error from the library's tree (a StackShiftError naming what is wrong) and writes nothing:
the namespace's keys are the same before and after. The CLI is driven through its real
entry point (click's main), the dashboard through its ASGI app; both answer usage errors
in one line (exit 2) or with a 400/404 page."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from helpers import namespace_keys

from stackshift_redis import (
    CancelOn,
    Concurrency,
    Debounce,
    InvalidArgumentError,
    PayloadError,
    RateLimit,
    RunNotFoundError,
    Singleton,
    StackShift,
    StackShiftError,
    Throttle,
    UnknownJobError,
)
from stackshift_redis._ops.cli import main as ops_main
from stackshift_redis.dashboard import create_app
from stackshift_redis.errors import ScheduleNotFoundError

Call = Callable[[StackShift], Awaitable[Any]]
BAD_PAYLOADS: list[Any] = [
    object(),
    {(1, 2): 1},
    {"x": [object()]},
    {1, 2},
    1 + 2j,
    b"x" * ((1 << 20) + 1),
]
NO_RUN = "0000000000000000deadbeef"


@dataclass(frozen=True)
class Case:
    """One bad call: what it raises and a word of its message."""

    id: str
    call: Call
    error: type[StackShiftError] = InvalidArgumentError
    says: str = ""


def _c(
    id: str, call: Call, error: type[StackShiftError] = InvalidArgumentError, says: str = ""
) -> Case:
    return Case(id, call, error, says)


def _setup(app: StackShift) -> None:
    app.job("ok", lambda ctx: None, queue="bq")
    app.job("keyed", lambda ctx: None, queue="bq", concurrency=[Concurrency(1, key="t")])
    app.job("called", lambda ctx: None, queue="bq", throttle=Throttle(1, 60, key=lambda p: 5))  # type: ignore[arg-type,return-value]
    app.job(
        "triggered",
        lambda ctx: None,
        queue="bq",
        on_event="signup",
        singleton=Singleton(key="user"),
    )


def _declare(**options: Any) -> Call:
    async def call(app: StackShift) -> None:
        app.job("declared", lambda ctx: None, **options)

    return call


def _flow(make: Callable[[], Any]) -> Call:
    async def call(app: StackShift) -> None:
        make()

    return call


def _sync(fn: Callable[[StackShift], Any]) -> Call:
    async def call(app: StackShift) -> Any:
        return await asyncio.to_thread(fn, app)

    return call


START: list[Case] = [
    *[
        _c(f"start job {j!r}", lambda a, j=j: a.start(j), says="job")
        for j in ["", "a b", "a/b", "x" * 129, None, 123, "a%b", "é"]
    ],
    _c("start unknown job", lambda a: a.start("nobody"), UnknownJobError, "nobody"),
    *[
        _c(f"start queue {q!r}", lambda a, q=q: a.start("ok", queue_name=q), says="queue")
        for q in ["bad q", "", "q/1", 5]
    ],
    *[
        _c(f"start payload {i}", lambda a, p=p: a.start("ok", p), PayloadError, "payload")
        for i, p in enumerate(BAD_PAYLOADS)
    ],
    *[
        _c(
            f"start idempotency_key {k!r:.20}",
            lambda a, k=k: a.start("ok", idempotency_key=k),
            says="idempotency",
        )
        for k in ["", 123, "x" * 513, b"k"]
    ],
    *[
        _c(
            f"start idempotency_ttl {t!r}",
            lambda a, t=t: a.start("ok", idempotency_ttl=t),
            says="idempotency_ttl",
        )
        for t in [-1, "1", math.inf, True]
    ],
    *[
        _c(f"start delay {d!r}", lambda a, d=d: a.start("ok", delay=d), says="delay")
        for d in [-1, "5", math.nan, [], timedelta(seconds=-1)]
    ],
    *[
        _c(f"start run_at {w!r}", lambda a, w=w: a.start("ok", run_at=w), says="run_at")
        for w in ["2030-01-01", 123]
    ],
    _c(
        "start delay and run_at",
        lambda a: a.start("ok", delay=1, run_at=datetime.now()),
        says="run_at",
    ),
    *[
        _c(f"start priority {p!r}", lambda a, p=p: a.start("ok", priority=p), says="priority")
        for p in [101, -101, 1.5, "1", True]
    ],
    _c("start flow key missing", lambda a: a.start("keyed", {}), says="Concurrency key"),
    _c("start flow key not a dict", lambda a: a.start("keyed", [1]), says="Concurrency key"),
    _c("start flow key fn returns int", lambda a: a.start("called", {}), says="callable"),
    _c("start sync bad job", _sync(lambda a: a.sync.start("a b")), says="job"),
    _c(
        "start sync bad payload",
        _sync(lambda a: a.sync.start("ok", {(1,): 2})),
        PayloadError,
        "payload",
    ),
]

START_MANY: list[Case] = [
    *[
        _c(f"start_many payloads {p!r:.20}", lambda a, p=p: a.start_many("ok", p), says="payloads")
        for p in ["abc", b"xy", None, 5]
    ],
    _c(
        "start_many one bad payload",
        lambda a: a.start_many("ok", [1, object(), 3]),
        PayloadError,
        "payload",
    ),
    _c(
        "start_many keys count",
        lambda a: a.start_many("ok", [1, 2], idempotency_keys=["k"]),
        says="idempotency_keys",
    ),
    _c(
        "start_many a bad key",
        lambda a: a.start_many("ok", [1, 2], idempotency_keys=["k", ""]),
        says="idempotency",
    ),
    _c(
        "start_many flow key missing",
        lambda a: a.start_many("keyed", [{"t": 1}, {}]),
        says="Concurrency key",
    ),
    _c("start_many bad job", lambda a: a.start_many("a b", [1]), says="job"),
]

EVENTS: list[Case] = [
    *[
        _c(f"send_event name {n!r:.20}", lambda a, n=n: a.send_event(n), says="event")
        for n in ["", "a b", None, "x" * 129, "a/b"]
    ],
    *[
        _c(f"send_event id {i!r:.20}", lambda a, i=i: a.send_event("e", id=i), says="event id")
        for i in ["", "x" * 257, 123]
    ],
    *[
        _c(f"send_event data {n}", lambda a, d=d: a.send_event("e", d), PayloadError, "event data")
        for n, d in enumerate(BAD_PAYLOADS[:5])
    ],
    _c(
        "send_event on_event flow key missing",
        lambda a: a.send_event("signup", {"x": 1}),
        says="Singleton key",
    ),
    _c(
        "send_event sync bad data",
        _sync(lambda a: a.sync.send_event("e", {(1,): 1})),
        PayloadError,
        "event data",
    ),
]


def _schedule(**kw: Any) -> Call:
    options = {"job": "ok", "every": 60, **kw}
    name = options.pop("name", "s")
    return lambda a: a.schedules.create(name, **options)


SCHEDULES: list[Case] = [
    *[
        _c(f"schedule name {n!r:.20}", _schedule(name=n), says="schedule")
        for n in ["", "a b", "x" * 129]
    ],
    _c("schedule job", _schedule(job="a b"), says="job"),
    _c("schedule unknown job", _schedule(job="nobody"), UnknownJobError, "nobody"),
    *[
        _c(f"schedule cron {c!r}", _schedule(every=None, cron=c), says="cron")
        for c in ["not a cron", "61 * * * *", "* * *", ""]
    ],
    _c("schedule cron and every", _schedule(cron="* * * * *"), says="cron"),
    _c("schedule neither", _schedule(every=None), says="cron"),
    *[_c(f"schedule every {e!r}", _schedule(every=e), says="every") for e in [0, -1, 0.5, "60"]],
    _c("schedule timezone", _schedule(timezone="Mars/Olympus"), says="timezone"),
    _c("schedule overlap", _schedule(overlap="nope"), says="overlap"),
    _c("schedule catchup", _schedule(catchup="nope"), says="catchup"),
    _c("schedule jitter", _schedule(jitter=-1), says="jitter"),
    *[
        _c(f"schedule payload {n}", _schedule(payload=p), PayloadError, "schedule payload")
        for n, p in enumerate(BAD_PAYLOADS[:3])
    ],
    *[
        _c(
            f"schedules.{verb} bad name",
            lambda a, v=verb: getattr(a.schedules, v)("a b"),
            says="schedule",
        )
        for verb in ["pause", "resume", "trigger", "delete", "get"]
    ],
    _c(
        "schedules.trigger unknown",
        lambda a: a.schedules.trigger("nope"),
        ScheduleNotFoundError,
        "nope",
    ),
]

STATE: list[Case] = [
    *[
        _c(f"state.set name {n!r:.20}", lambda a, n=n: a.state.set(n, 1), says="state name")
        for n in ["", 123, "x" * 513]
    ],
    *[
        _c(f"state.set ttl {t!r}", lambda a, t=t: a.state.set("k", 1, ttl=t), says="ttl")
        for t in [0, -1, "1", math.nan]
    ],
    *[
        _c(f"state.set value {n}", lambda a, v=v: a.state.set("k", v), PayloadError, "state")
        for n, v in enumerate(BAD_PAYLOADS[:4])
    ],
    *[
        _c(f"state.incr amount {x!r}", lambda a, x=x: a.state.incr("n", x), says="amount")
        for x in ["1", 1.5, 2**64, True]
    ],
    _c("state.incr ttl", lambda a: a.state.incr("n", 1, ttl=-1), says="ttl"),
    _c("state.mark ttl 0", lambda a: a.state.mark("m", 0), says="ttl"),
    _c("state.get name", lambda a: a.state.get(""), says="state name"),
    _c("state.delete name", lambda a: a.state.delete(None), says="state name"),  # type: ignore[arg-type]
    _c("state.lock ttl", lambda a: _lock(a, ttl=0), says="ttl"),
    _c("state.lock name", lambda a: _lock(a, name=""), says="state name"),
    _c("state.lock wait", lambda a: _lock(a, wait=-1), says="wait"),
]


async def _lock(app: StackShift, name: str = "l", ttl: Any = 30, wait: Any = 5) -> None:
    async with app.state.lock(name, ttl=ttl, wait=wait):
        pass


FLOW: list[Case] = [
    _c("Concurrency 0", _flow(lambda: Concurrency(0)), says="Concurrency limit"),
    _c("Concurrency -1", _flow(lambda: Concurrency(-1)), says="Concurrency limit"),
    _c("Concurrency 1.5", _flow(lambda: Concurrency(1.5)), says="Concurrency limit"),  # type: ignore[arg-type]
    _c("Concurrency key", _flow(lambda: Concurrency(1, key="a b")), says="Concurrency key"),
    _c("Throttle limit", _flow(lambda: Throttle(0, 60)), says="Throttle limit"),
    _c("Throttle period", _flow(lambda: Throttle(1, 0)), says="Throttle period"),
    _c("Throttle burst", _flow(lambda: Throttle(1, 60, burst=-1)), says="Throttle burst"),
    _c("RateLimit limit", _flow(lambda: RateLimit(0, 1)), says="RateLimit limit"),
    _c("RateLimit period", _flow(lambda: RateLimit(1, -1)), says="RateLimit period"),
    _c("Debounce period", _flow(lambda: Debounce(0)), says="Debounce period"),
    _c("Debounce timeout", _flow(lambda: Debounce(1, timeout=0)), says="Debounce timeout"),
    _c("Singleton mode", _flow(lambda: Singleton(mode="x")), says="Singleton mode"),
    _c("CancelOn no event", _flow(lambda: CancelOn()), says="CancelOn event"),
    _c("CancelOn event name", _flow(lambda: CancelOn(event="a b")), says="event"),
    _c("CancelOn match", _flow(lambda: CancelOn(event="e", match={})), says="CancelOn match"),
    _c("job priority", _declare(priority=200), says="priority"),
    _c("job concurrency type", _declare(concurrency="x"), says="concurrency"),
    _c("job throttle type", _declare(throttle=5), says="throttle"),
    _c("job name", lambda a: _bad_job(a), says="job"),
    _c("job retries", _declare(retries=-1), says="retries"),
    _c("job timeout", _declare(timeout=0), says="timeout"),
    _c("job on_failure itself", _declare(on_failure="declared"), says="on_failure"),
    _c("job cron", _declare(cron="nope"), says="cron"),
    _c("queue name", lambda a: _queue(a, "a b"), says="queue"),
    _c("queue concurrency", lambda a: _queue(a, "q", concurrency=-1), says="concurrency"),
    _c("queue visibility", lambda a: _queue(a, "q", visibility_timeout=0), says="visibility"),
]


async def _bad_job(app: StackShift) -> None:
    app.job("a b", lambda ctx: None)


async def _queue(app: StackShift, name: str, **kw: Any) -> None:
    app.queue(name, **kw)


RUNS: list[Case] = [
    *[_c(f"get_run {r!r}", lambda a, r=r: a.get_run(r), says="run_id") for r in ["", None, 5]],
    _c("cancel bad id", lambda a: a.cancel(""), says="run_id"),
    _c("retry unknown", lambda a: a.retry(NO_RUN), RunNotFoundError, NO_RUN),
    _c("replay unknown", lambda a: a.replay(NO_RUN), RunNotFoundError, NO_RUN),
    _c("replay from_step ''", lambda a: a.replay(NO_RUN, from_step=""), says="from_step"),
    *[
        _c(f"list_runs status {s!r}", lambda a, s=s: a.list_runs(status=s), says="status")
        for s in ["lost", [], ["failed", "x"]]
    ],
    *[
        _c(f"list_runs limit {n!r}", lambda a, n=n: a.list_runs(limit=n), says="limit")
        for n in [0, 10_001, "5"]
    ],
    _c("list_runs cursor", lambda a: a.list_runs(cursor="not-a-cursor"), says="cursor"),
    _c("list_runs created_after", lambda a: a.list_runs(created_after="x"), says="created_after"),  # type: ignore[arg-type]
    _c(
        "list_runs inverted",
        lambda a: a.list_runs(
            created_after=datetime(2030, 1, 1), created_before=datetime(2020, 1, 1)
        ),
        says="created_after",
    ),
    _c("list_runs job", lambda a: a.list_runs(job="a b"), says="job"),
    _c("find_run key", lambda a: a.find_run("ok", ""), says="idempotency_key"),
    _c("cancel_runs completed", lambda a: a.cancel_runs(status="completed"), says="status"),
    _c("retry_runs queued", lambda a: a.retry_runs(status="queued"), says="status"),
    _c("cancel_runs reason", lambda a: a.cancel_runs(reason=5), says="reason"),  # type: ignore[arg-type]
    _c("pause_queue name", lambda a: a.pause_queue("a b"), says="queue"),
]

CASES = START + START_MANY + EVENTS + SCHEDULES + STATE + FLOW + RUNS


async def _baseline(app: StackShift) -> list[bytes]:
    _setup(app)
    await app.start("ok")  # the namespace exists: its layout, a run, the queue's keys
    return await namespace_keys(app)


def test_the_sweep_is_large_enough() -> None:
    assert len(CASES) + len(CLI) + len(DASHBOARD) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_and_writes_nothing(app: StackShift, case: Case) -> None:
    before = await _baseline(app)
    with pytest.raises(StackShiftError) as caught:
        await case.call(app)
    assert isinstance(caught.value, case.error), repr(caught.value)
    message = str(caught.value)
    assert case.says.lower() in message.lower(), message
    assert "\n" not in message.strip(), message  # one line
    assert await namespace_keys(app) == before


CLI: list[tuple[str, list[str], int, str]] = [
    ("status", ["runs", "list", "--status", "lost"], 2, "--status"),
    ("limit 0", ["runs", "list", "--limit", "0"], 2, "--limit"),
    ("limit text", ["runs", "list", "--limit", "many"], 2, "--limit"),
    ("cursor", ["runs", "list", "--cursor", "not-a-cursor"], 2, "cursor"),
    ("after", ["runs", "list", "--after", "yesterday"], 2, "--after"),
    (
        "inverted",
        ["runs", "list", "--after", "2030-01-01", "--before", "2020-01-01"],
        2,
        "created_after",
    ),
    ("job", ["runs", "list", "--job", "bad name!"], 2, "job"),
    ("show missing", ["runs", "show"], 2, "RUN_ID"),
    ("show unknown", ["runs", "show", NO_RUN], 1, NO_RUN),
    ("cancel unknown", ["runs", "cancel", NO_RUN], 1, NO_RUN),
    ("retry unknown", ["runs", "retry", NO_RUN], 1, NO_RUN),
    ("replay missing", ["runs", "replay"], 2, "RUN_ID"),
    ("find key", ["runs", "find", "ok", ""], 2, "idempotency_key"),
    ("event name", ["events", "send", "bad name!"], 2, "event"),
    ("event data", ["events", "send", "e", "--data", "{nope"], 2, "--data"),
    ("event id", ["events", "send", "e", "--id", "x" * 257], 2, "event id"),
    ("schedule missing", ["schedules", "pause"], 2, "NAME"),
    ("schedule unknown", ["schedules", "trigger", "nope"], 1, "nope"),
    ("no such command", ["runs", "frobnicate"], 2, "frobnicate"),
    ("no such option", ["runs", "list", "--bogus"], 2, "--bogus"),
]


@pytest.mark.parametrize(("args", "code", "says"), [c[1:] for c in CLI], ids=[c[0] for c in CLI])
async def test_the_cli_refuses_bad_arguments_in_one_line(
    app: StackShift, redis_url: str, is_cluster: bool, args: list[str], code: int, says: str
) -> None:
    before = await _baseline(app)
    base = ["--redis-url", redis_url, "--namespace", app.namespace, *["--cluster"] * is_cluster]
    result = await asyncio.to_thread(CliRunner().invoke, ops_main, [*base, *args])
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.output, lines
    assert await namespace_keys(app) == before


DASHBOARD: list[tuple[str, str, str, int, str]] = [
    ("status", "GET", "/runs?status=lost", 400, "unknown status"),
    ("cursor", "GET", "/runs?cursor=not-a-cursor", 400, "invalid cursor"),
    ("job", "GET", "/runs?job=bad%20name", 400, "invalid job name"),
    ("status and cursor", "GET", "/runs?status=failed&cursor=zz", 400, "invalid cursor"),
    ("unknown run", "GET", f"/runs/{NO_RUN}", 404, NO_RUN),
    ("event name", "POST", "/events", 400, "invalid event name"),
    ("event data", "POST", "/events?data=1", 400, "JSON"),
    ("cancel unknown", "POST", f"/runs/{NO_RUN}/cancel", 404, NO_RUN),
]


@pytest.mark.parametrize(
    ("method", "path", "code", "says"), [c[1:] for c in DASHBOARD], ids=[c[0] for c in DASHBOARD]
)
async def test_the_dashboard_refuses_bad_query_strings(
    app: StackShift, method: str, path: str, code: int, says: str
) -> None:
    before = await _baseline(app)
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        if method == "POST":
            page = await c.get("/events")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            form = {"csrf": csrf.group(1), "name": "bad name", "data": ""}
            if "data=1" in path:
                form = {"csrf": csrf.group(1), "name": "e", "data": "{nope"}
            response = await c.post(path.split("?")[0], data=form)
        else:
            response = await c.get(path)
    assert response.status_code == code, response.text[:300]
    assert says.lower() in response.text.lower(), response.text[:2000]
    assert await namespace_keys(app) == before
