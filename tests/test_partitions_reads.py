"""Partitions (issue 28): every read and operator action that looks across all runs sees
every partition: listing and paging, counts, bulk cancel/retry by filter with a resumable
cursor, queue stats and totals, minute counts, metrics gauges, lookups by idempotency
key, and the `stackshift` command. Runs are spread over the partitions by partition_key."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest
from click.testing import CliRunner
from helpers import wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis._client import control
from stackshift_redis._client.events import EventBus
from stackshift_redis._client.inspector import Inspector
from stackshift_redis._client.jobs_view import jobs_report
from stackshift_redis._client.queue_view import queue_gauges
from stackshift_redis._client.views import minute_series
from stackshift_redis._core.fanout import each, merge_desc, sum_rows
from stackshift_redis._core.partitions import route
from stackshift_redis._core.routing import idempotency_partition
from stackshift_redis._ops.cli import main
from stackshift_redis._ops.target import Target
from stackshift_redis.dashboard.ops import search_run

P = 4
KEYS = [next(f"k{i}" for i in range(100) if route(f"k{i}", P) == p) for p in range(P)]


def test_merge_and_sums() -> None:
    lists = [["9-0", "5-0", "1-0"], ["8-1", "7-1"], [], ["6-3", "2-3"]]
    assert merge_desc(lists, key=lambda i: i) == ["9-0", "8-1", "7-1", "6-3", "5-0", "2-3", "1-0"]
    assert merge_desc(lists, key=lambda i: i, limit=3) == ["9-0", "8-1", "7-1"]
    assert merge_desc([[("a", 5.0)], [("b", 7.0)]], key=lambda e: e[1]) == [("b", 7.0), ("a", 5.0)]
    assert sum_rows([[1, None, b"2"], [3, 4, b"5"]]) == [4, 4, 7]
    assert sum_rows([]) == []


async def test_each_partition_ends_before_an_error_is_raised() -> None:
    ended: list[int] = []

    async def read(p: int) -> int:
        await asyncio.sleep(0.01 * (3 - p))
        ended.append(p)
        if p in (1, 2):
            raise ValueError(f"partition {p}")
        return p * 10

    with pytest.raises(ValueError, match="partition 1"):
        await each(cast(Any, SimpleNamespace(partitions=3)), read)
    assert sorted(ended) == [0, 1, 2]
    ended.clear()
    assert await each(cast(Any, SimpleNamespace(partitions=1)), read) == [0]
    assert ended == [0]


async def _app(make_app: Callable[..., StackShift]) -> StackShift:
    app = make_app(partitions=P)

    @app.job("a", queue="qa")
    async def a(ctx: RunContext) -> None: ...

    @app.job("b", queue="qb")
    async def b(ctx: RunContext) -> None: ...

    await app.worker().registration.setup()  # publishes the definitions (no worker runs)
    return app


def _id(handle: Any) -> str:
    assert isinstance(handle.id, str)
    return handle.id


async def _spread(app: StackShift, job: str, n: int, **options: Any) -> list[str]:
    """n runs of `job`, round robin over the partitions; their ids."""
    ids = [_id(await app.start(job, i, partition_key=KEYS[i % P], **options)) for i in range(n)]
    assert {app._core.part_of(i) for i in ids} == set(range(min(n, P)))
    return ids


async def _pages(app: StackShift, limit: int, **filters: Any) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = await app.list_runs(limit=limit, cursor=cursor, **filters)
        pages.append([r.id for r in page])
        cursor = page.cursor
        if cursor is None:
            return pages


async def test_list_pages_every_run_once_newest_first(make_app: Callable[..., StackShift]) -> None:
    app = await _app(make_app)
    a_ids = await _spread(app, "a", 14)
    b_ids = await _spread(app, "b", 9)
    everything = sorted(a_ids + b_ids, reverse=True)
    for limit in (1, 5, 7, 23, 50):
        pages = await _pages(app, limit)
        assert [i for p in pages for i in p] == everything
        assert all(0 < len(p) <= limit for p in pages)
    assert [i for p in await _pages(app, 4, job="a") for i in p] == sorted(a_ids, reverse=True)
    gone = [a_ids[0], a_ids[5], b_ids[2], b_ids[7]]  # on partitions 0, 1, 2, 3
    for i in gone:
        assert await app.cancel(i)
    cancelled = [i for p in await _pages(app, 3, status="cancelled") for i in p]
    assert cancelled == sorted(gone, reverse=True)
    queued = [i for p in await _pages(app, 6, status="queued", job="b") for i in p]
    assert queued == sorted(set(b_ids) - set(gone), reverse=True)
    page = await app.list_runs(status=["queued", "cancelled"], job="a", limit=100)
    assert {r.id: r.status for r in page} == {
        i: ("cancelled" if i in gone else "queued") for i in a_ids
    }
    newest = await app.list_runs(limit=3, created_after=None)
    assert [r.id for r in newest] == everything[:3] and newest.cursor == everything[2]


async def test_count_and_bulk_by_filter_reach_every_partition(
    make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await _app(make_app)
    a_ids = await _spread(app, "a", 22)
    b_ids = await _spread(app, "b", 8)
    late = await _spread(app, "a", 4, delay=timedelta(hours=1))
    ctl = app._control
    assert await ctl.count_runs("cancel", job="a") == 26
    assert await ctl.count_runs("cancel", job="a", status="scheduled") == 4
    assert await ctl.count_runs("cancel") == 34
    assert await ctl.count_runs("retry") == 0
    monkeypatch.setattr(control, "BATCH", 3)  # many batches, a cursor after each
    total, cursor, cursors = 0, None, []
    while True:
        changed, cursor = await ctl.bulk_part("cancel", job="a", cursor=cursor, seconds=0)
        total += changed
        if cursor is None:
            break
        cursors.append(cursor)
    assert total == 26
    assert {c.split(".")[0] for c in cursors} == {str(p) for p in range(P)}  # resumed on each
    assert {await app.run(i).status() for i in a_ids + late} == {"cancelled"}
    assert {await app.run(i).status() for i in b_ids} == {"queued"}
    assert await ctl.count_runs("retry", status="cancelled") == 26
    assert await app.retry_runs(job="a", status="cancelled") == 26
    assert {await app.run(i).status() for i in a_ids + late} == {"queued"}
    assert await app.cancel_runs(status="queued") == 34
    assert await ctl.count_runs("cancel") == 0
    with pytest.raises(Exception, match="invalid cursor"):
        await ctl.bulk_part("cancel", cursor=f"{P}.0|||")


async def test_queue_stats_totals_and_gauges_are_summed(
    make_app: Callable[..., StackShift],
) -> None:
    app = await _app(make_app)
    a_ids = await _spread(app, "a", 11)
    await _spread(app, "b", 5)
    await _spread(app, "b", 4, delay=timedelta(hours=1))
    for i in a_ids[:4]:
        await app.cancel(i)
    insp = Inspector(app._core)
    stats = {q.name: q for q in await insp.queues()}
    assert (stats["qa"].ready, stats["qa"].scheduled) == (7, 0)
    assert (stats["qb"].ready, stats["qb"].scheduled, stats["qb"].delayed) == (5, 4, 4)
    assert stats["qa"].jobs == ["a"] and stats["qa"].ready_exact
    totals = await insp.totals()
    assert (totals["queued"], totals["scheduled"], totals["cancelled"]) == (12, 4, 4)
    assert sum(totals.values()) == 20
    alive, gauges = await queue_gauges(app._core, ["qa", "qb", "idle"])
    by_queue = {g.queue: g for g in gauges}
    assert alive == 0
    assert (by_queue["qa"].ready, by_queue["qb"].ready, by_queue["qb"].scheduled) == (7, 5, 4)
    assert by_queue["idle"].ready == 0
    [report] = [r for r in await jobs_report(app._core) if r.job == "a"]
    assert report.unfinished == {1: {"queued": 7}} and not report.capped


async def test_minute_counts_are_summed(make_app: Callable[..., StackShift]) -> None:
    app = await _app(make_app)
    ns = app._core
    secs, _ = await app.redis.time()
    now_ms = int(secs) * 1000
    minute = now_ms // 60_000
    for p, keys in enumerate(ns.part_keys):  # as lib/minute_counts.lua records finishes
        await app.redis.hset(keys.minutes("qa"), mapping={f"{minute}:c": p + 1, f"{minute}:f": 1})
    [series] = await minute_series(ns, ["qa"], now_ms)
    assert series.completed[-1] == 1 + 2 + 3 + 4 and series.failed[-1] == P
    assert sum(series.completed) == 10


async def test_find_by_idempotency_key_on_any_partition(
    make_app: Callable[..., StackShift],
) -> None:
    app = await _app(make_app)
    home = _id(await app.start("a", 1, idempotency_key="order-1"))
    assert app._core.part_of(home) == idempotency_partition("a", "order-1", P)
    away_key = next(k for k in KEYS if route(k, P) != idempotency_partition("a", "o-2", P))
    away = _id(await app.start("a", 2, idempotency_key="o-2", partition_key=away_key))
    assert app._core.part_of(away) == route(away_key, P)
    for key, handle in (("order-1", home), ("o-2", away)):
        found = await app.find_run("a", key)
        assert found is not None and found.id == handle
        assert await search_run(app, key, ["b", "a"]) == handle
    assert await app.find_run("b", "order-1") is None
    assert await app.find_run("a", "missing") is None
    assert await search_run(app, away, []) == away


async def test_the_command_lists_runs_and_queues_of_every_partition(
    make_app: Callable[..., StackShift], redis_url: str, is_cluster: bool
) -> None:
    app = await _app(make_app)
    ids = await _spread(app, "a", 6) + await _spread(app, "b", 3)
    base = ["--redis-url", redis_url, "--namespace", app.namespace, *(["--cluster"] * is_cluster)]

    async def cli(*args: str) -> Any:
        result = await asyncio.to_thread(CliRunner().invoke, main, [*base, *args, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    listed, cursor = [], None
    while True:
        more: list[str] = ["--cursor", cursor] if cursor else []
        page = await cli("runs", "list", "--limit", "4", *more)
        listed += [r["id"] for r in page["runs"]]
        cursor = page["cursor"]
        if cursor is None:
            break
    assert listed == sorted(ids, reverse=True)
    only_b = await cli("runs", "list", "--job", "b")
    assert [r["id"] for r in only_b["runs"]] == sorted(ids[6:], reverse=True)
    queues = {q["name"]: q for q in await cli("queues")}
    assert (queues["qa"]["ready"], queues["qb"]["ready"]) == (6, 3)
    keyed = _id(await app.start("b", 1, idempotency_key="inv-1", partition_key=KEYS[2]))
    assert (await cli("runs", "find", "b", "inv-1"))["id"] == keyed
    assert (await cli("runs", "show", keyed))["status"] == "queued"
    # `stackshift dashboard` makes its app before serving: with the recorded count too
    served = await asyncio.to_thread(Target(redis_url, app.namespace, is_cluster).app)
    try:
        assert served._core.partitions == P
        assert len(await served.list_runs(limit=100)) == len(ids) + 1
    finally:
        await served.close()
        await served.redis.aclose()


async def test_recent_events_of_every_partition_once(make_app: Callable[..., StackShift]) -> None:
    app = await _app(make_app)
    ns = app._core
    bus = EventBus(ns)
    legs = [("paid", "e1", {"n": 1}, [0, 2]), ("shipped", "e2", {"n": 2}, [3])]
    legs.append(("paid", "e3", {"n": 3}, [1]))
    for name, eid, data, parts in legs:  # an event's legs on some partitions
        for p in parts:
            reply = await ns.part_scripts(p).send_event(bus.prepare(name, data, eid))
            assert not reply.duplicate
        await asyncio.sleep(0.005)
    events = await Inspector(ns).recent_events()
    assert [(e.name, e.id, e.data) for e in events] == [
        ("paid", "e3", {"n": 3}),
        ("shipped", "e2", {"n": 2}),
        ("paid", "e1", {"n": 1}),
    ]
    assert [e.id for e in await Inspector(ns).recent_events(per_name=1)] == ["e3", "e2"]


async def test_waiters_of_every_partition_newest_first(make_app: Callable[..., StackShift]) -> None:
    app = await _app(make_app)
    ns = app._core
    ids = await _spread(app, "a", 8)
    for n, run_id in enumerate(ids):  # parked as lib/add_wait.lua and move_index leave them
        keys = ns.keys_of(run_id)
        wait = json.dumps({"k": "event", "e": f"evt{n}", "s": "id"})
        await app.redis.hset(keys.run(run_id), mapping={"status": "waiting", "w:pay": wait})
        await app.redis.zadd(keys.idx_status("waiting"), {run_id: 1_000_000 + n})
    waiters = await Inspector(ns).waiters()
    assert [w.run_id for w in waiters] == ids[::-1]
    assert [w.event for w in waiters] == [f"evt{n}" for n in range(7, -1, -1)]
    assert all(w.job == "a" and w.step == "pay" and w.match_on == ["id"] for w in waiters)
    assert [w.run_id for w in await Inspector(ns).waiters(limit=3)] == ids[:-4:-1]


async def test_the_dashboard_pages_searches_and_acts_on_every_partition(
    make_app: Callable[..., StackShift], monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from stackshift_redis.dashboard import create_app, ops

    app = await _app(make_app)
    ids = await _spread(app, "a", 60)
    keyed = _id(await app.start("b", 1, idempotency_key="inv-7", partition_key=KEYS[3]))
    monkeypatch.setattr(ops, "PART_S", 0.0)  # a progress page after every batch
    monkeypatch.setattr(control, "BATCH", 7)
    transport = httpx.ASGITransport(app=create_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        seen: list[str] = []
        url: str | None = "/runs?job=a"
        while url:
            page = await c.get(url)
            seen += re.findall(r'data-run="([0-9a-f-]+)"', page.text)
            nxt = re.search(r'class="next" href="([^"]+)"', page.text)
            url = nxt.group(1).replace("&amp;", "&") if nxt else None
        assert seen == sorted(ids, reverse=True)
        found = await c.get("/runs", params={"q": "inv-7"})
        assert found.status_code == 303 and found.headers["location"] == f"/runs/{keyed}"
        token = re.search(r'name="csrf" value="([^"]+)"', (await c.get("/runs?job=a")).text)
        assert token
        form: dict[str, Any] = {"csrf": token.group(1), "action": "cancel", "job": "a"}
        confirm = await c.post("/runs/bulk", data=form)
        assert 'data-count="60"' in confirm.text
        form.update(confirm="yes", count="60")
        parts = 0
        while True:
            reply = await c.post("/runs/bulk", data=form)
            if reply.status_code == 303:
                break
            parts += 1
            cursor = re.search(r'name="cursor" value="([^"]+)"', reply.text)
            done = re.search(r'name="done" value="(\d+)"', reply.text)
            assert cursor and done
            form.update(cursor=cursor.group(1), done=done.group(1))
        assert "60+run%28s%29+cancelled" in reply.headers["location"] and parts >= P
    assert {await app.run(i).status() for i in ids} == {"cancelled"}
    assert await app.run(keyed).status() == "queued"


async def test_finished_and_running_runs_of_every_partition(
    make_app: Callable[..., StackShift], running_worker: Any
) -> None:
    app = make_app(partitions=P)
    release = asyncio.Event()

    @app.job("ok", queue="qw")
    async def ok(ctx: RunContext) -> int:
        return 1

    @app.job("bad", queue="qw", retries=0)
    async def bad(ctx: RunContext) -> None:
        raise RuntimeError("declined")

    @app.job("slow", queue="qw")
    async def slow(ctx: RunContext) -> None:
        await release.wait()

    running_worker(app, concurrency=8)
    oks = await _spread(app, "ok", 8)
    bads = await _spread(app, "bad", 4)
    slows = await _spread(app, "slow", 4)

    async def settled() -> bool:
        done = {await app.run(i).status() for i in oks}, {await app.run(i).status() for i in bads}
        running = {await app.run(i).status() for i in slows}
        return done == ({"completed"}, {"failed"}) and running == {"running"}

    await wait_for(settled, timeout=20)
    assert [i for p in await _pages(app, 3, status="running") for i in p] == slows[::-1]
    listed = [i for p in await _pages(app, 5, status=["running", "failed"]) for i in p]
    assert listed == sorted(slows + bads, reverse=True)
    ctl = app._control
    assert await ctl.count_runs("cancel", status="running") == 4
    assert await ctl.count_runs("cancel", job="slow") == 4
    assert await ctl.count_runs("retry") == 4
    insp = Inspector(app._core)
    [qw] = [q for q in await insp.queues() if q.name == "qw"]
    assert (qw.running, qw.completed_1m, qw.failed_1h, qw.ready) == (4, 8, 4, 0)
    totals = await insp.totals()
    assert (totals["completed"], totals["failed"], totals["running"]) == (8, 4, 4)
    [series] = await minute_series(app._core, ["qw"], await insp.server_ms())
    assert (sum(series.completed), sum(series.failed)) == (8, 4)
    alive, gauges = await queue_gauges(app._core, ["qw"])
    assert alive == 1 and [(g.queue, g.running, g.ready) for g in gauges] == [("qw", 4, 0)]
    assert await app.retry_runs(job="bad") == 4
    await wait_for(settled, timeout=20)
    release.set()
    for i in slows:
        assert await app.run(i).result(timeout=10) is None
    assert (await insp.totals())["completed"] == 12


async def test_the_command_takes_the_partition_count_of_a_new_namespace(
    make_app: Callable[..., StackShift], redis_url: str, is_cluster: bool
) -> None:
    app = make_app(partitions=P)
    base = ["--redis-url", redis_url, "--namespace", app.namespace, *(["--cluster"] * is_cluster)]

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(CliRunner().invoke, main, [*base, *args])

    paused = await cli("--partitions", str(P), "queues", "pause", "q1")  # its first write
    assert paused.exit_code == 0 and "queue q1: paused" in paused.output
    assert await app.pause_queue("q1") is False  # the namespace has P partitions
    assert (await cli("queues", "resume", "q1")).exit_code == 0  # the recorded count
    wrong = await cli("--partitions", "2", "runs", "list")
    assert wrong.exit_code == 2 and f"has {P} partition(s), not 2" in wrong.output
    one = make_app(partitions=1)
    await one.state.set("a", 1)
    base[3] = one.namespace
    wrong = await cli("--partitions", str(P), "runs", "list")
    assert wrong.exit_code == 2 and f"has 1 partition(s), not {P}" in wrong.output
