"""Operators, round 2 in the dashboard (ASGI, no browser): bulk retry/cancel with a
confirmation showing the count, queue pause/resume, schedule buttons, run list filters
and search, under the CSRF and read-only rules."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from helpers import wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis.dashboard import create_app


def _client(asgi: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t")


async def _csrf(c: httpx.AsyncClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', (await c.get(path)).text)
    assert found
    return found.group(1)


async def test_bulk_cancel_and_retry_confirm_with_the_count(app: StackShift) -> None:
    app.job("mass", lambda ctx: None, queue="dq")
    app.job("other", lambda ctx: None, queue="dq")
    await app.start_many("mass", list(range(30)))
    keep = await app.start("other")
    await app._core.redis.hset(app._core.keys.jobs(), mapping={"mass": "dq", "other": "dq"})
    async with _client(create_app(app)) as c:
        page = (await c.get("/runs", params={"job": "mass", "status": "queued"})).text
        assert 'id="bulk-cancel"' in page and '<option value="mass" selected>' in page
        csrf = await _csrf(c, "/runs?job=mass")
        form = {"csrf": csrf, "action": "cancel", "job": "mass", "status": "queued"}
        confirm = await c.post("/runs/bulk", data=form)
        assert confirm.status_code == 200 and 'data-count="30"' in confirm.text
        assert await app.run(keep.id).status() == "queued"
        done = await c.post("/runs/bulk", data={**form, "confirm": "yes"})
        assert done.status_code == 303 and "30+run%28s%29+cancelled" in done.headers["location"]
        assert done.headers["location"].startswith("/runs?job=mass&status=queued&msg=")
        form = {"csrf": csrf, "action": "retry", "job": "mass", "status": "cancelled"}
        confirm = await c.post("/runs/bulk", data=form)
        assert 'data-count="30"' in confirm.text
        done = await c.post("/runs/bulk", data={**form, "confirm": "yes"})
        assert "30+run%28s%29+retried" in done.headers["location"]
        assert await app.run(keep.id).status() == "queued"
        forged = await c.post("/runs/bulk", data={**form, "csrf": "x", "confirm": "yes"})
        assert forged.status_code == 403
    async with _client(create_app(app, read_only=True)) as c:
        refused = await c.post("/runs/bulk", data=form)
        assert refused.status_code == 405


async def test_queue_and_schedule_buttons(app: StackShift) -> None:
    app.job("tick", lambda ctx: None, queue="dq")
    await app.schedules.create("hourly", job="tick", cron="0 * * * *")
    await app._core.redis.hset(app._core.keys.jobs(), "tick", "dq")  # (after the first write)
    async with _client(create_app(app)) as c:
        home = (await c.get("/")).text
        assert 'data-queue-action="pause"' in home
        csrf = await _csrf(c, "/")
        paused = await c.post("/queues/dq/pause", data={"csrf": csrf})
        assert paused.status_code == 303 and "paused" in paused.headers["location"]
        assert 'data-queue-action="resume"' in (await c.get("/")).text
        await c.post("/queues/dq/resume", data={"csrf": csrf})
        assert await app.pause_queue("dq") is True  # it was resumed
        page = (await c.get("/schedules")).text
        assert 'data-action="trigger"' in page and 'data-action="delete"' in page
        fired = await c.post("/schedules/hourly/trigger", data={"csrf": csrf})
        assert "triggered" in fired.headers["location"]
        ask = await c.post("/schedules/hourly/delete", data={"csrf": csrf})
        assert ask.status_code == 200 and "Delete schedule hourly?" in ask.text
        assert await app.schedules.get("hourly") is not None
        gone = await c.post("/schedules/hourly/delete", data={"csrf": csrf, "confirm": "yes"})
        assert gone.status_code == 303 and await app.schedules.get("hourly") is None
        missing = await c.post("/schedules/hourly/pause", data={"csrf": csrf})
        assert missing.status_code == 404


async def test_runs_filters_and_search(app: StackShift) -> None:
    app.job("a", lambda ctx: None, queue="dq")
    app.job("b", lambda ctx: None, queue="dq")
    ra = await app.start("a", idempotency_key="order:o_1")
    rb = await app.start("b")
    await app._core.redis.hset(app._core.keys.jobs(), mapping={"a": "dq", "b": "dq"})
    async with _client(create_app(app)) as c:
        by_id = await c.get("/runs", params={"q": rb.id})
        assert by_id.status_code == 303 and by_id.headers["location"] == f"/runs/{rb.id}"
        by_key = await c.get("/runs", params={"q": "order:o_1"})
        assert by_key.headers["location"] == f"/runs/{ra.id}"
        miss = await c.get("/runs", params={"q": "nope"})
        assert miss.status_code == 200 and 'id="search-miss"' in miss.text
        later = await c.get("/runs", params={"created_after": "2999-01-01T00:00"})
        assert ra.id not in later.text and "No runs match" in later.text
        earlier = await c.get("/runs", params={"created_before": "2999-01-01T00:00:00"})
        assert ra.id in earlier.text and rb.id in earlier.text
        bad = await c.get("/runs", params={"created_after": "yesterday"})
        assert bad.status_code == 400


async def test_minute_counts_feed_the_overview_chart(app: StackShift, running_worker: Any) -> None:
    def flaky(ctx: RunContext) -> None:
        if ctx.payload % 4 == 0:
            raise RuntimeError("no")

    app.job("burst", flaky, queue="cq", retries=0)
    handles = await app.start_many("burst", list(range(40)))
    running_worker(app, concurrency=10)
    assert len(handles) == 40

    async def all_done() -> bool:  # every run finished: 10 failed, and 30 completed
        statuses = [await h.status() for h in handles]
        return statuses.count("failed") == 10 and statuses.count("completed") == 30

    await wait_for(all_done, timeout=20)
    counts = {"c": 0, "f": 0}
    for keys in app._core.part_keys:  # kept per partition
        key = keys.minutes("cq")
        fields = await app._core.redis.hgetall(key)
        for k, v in fields.items():
            counts[k.decode()[-1]] += int(v)
        if fields:
            assert 0 < await app._core.redis.pttl(key) <= 3_660_000
    assert counts == {"c": 30, "f": 10}
    async with _client(create_app(app)) as c:
        home = (await c.get("/")).text
        assert '<svg class="chart"' in home and 'data-queue="cq" data-completed="30"' in home
        assert 'data-failed="10"' in home


async def test_login_session_cookie_csrf_tied_to_the_session_and_headers(
    app: StackShift,
) -> None:
    app.job("ok", lambda ctx: None, queue="dq")
    run = await app.start("ok", delay=600)
    asgi = create_app(app, token="s3cret")
    async with _client(asgi) as c:
        asked = await c.get("/runs")
        assert asked.status_code == 401 and 'name="token"' in asked.text
        assert asked.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in asked.headers["content-security-policy"]
        wrong = await c.post("/login", data={"token": "nope", "next": "/runs"})
        assert wrong.status_code == 401 and "Wrong token" in wrong.text
        ok = await c.post("/login", data={"token": "s3cret", "next": "/runs"})
        assert ok.status_code == 303 and ok.headers["location"] == "/runs"
        assert "s3cret" not in ok.headers["set-cookie"]
        page = await c.get(f"/runs/{run.id}")
        assert page.status_code == 200 and "?token=" not in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf
        other = _client(asgi)
        async with other:
            await other.post("/login", data={"token": "s3cret"})
            stolen = await other.post(f"/runs/{run.id}/cancel", data={"csrf": csrf.group(1)})
            assert stolen.status_code == 403  # another session's token
        done = await c.post(f"/runs/{run.id}/cancel", data={"csrf": csrf.group(1)})
        assert done.status_code == 303
        icon = await c.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
        evil = await c.post("/login", data={"token": "s3cret", "next": "//evil.example/"})
        assert evil.headers["location"] == "/"
    async with _client(create_app(app)) as c:  # no token: a session for the CSRF token
        page = await c.get("/")
        assert "stackshift_session" in page.headers["set-cookie"]
        assert (await c.get("/static/dashboard.css")).headers["x-frame-options"] == "DENY"


async def test_event_data_is_shown_as_written(app: StackShift) -> None:
    await app.send_event("note", {"html": "<b>x</b>", "word": "café"})
    async with _client(create_app(app)) as c:
        page = (await c.get("/events")).text
        assert "&lt;b&gt;x&lt;/b&gt;" in page and "café" in page
        assert "\\u003c" not in page and "<b>x</b>" not in page


async def test_a_large_bulk_action_goes_on_in_parts_with_progress(
    app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stackshift_redis.dashboard import ops

    monkeypatch.setattr(ops, "PART_S", 0.0)  # one batch per request
    app.job("many", lambda ctx: None, queue="dq")
    await app.start_many("many", list(range(450)))
    async with _client(create_app(app)) as c:
        csrf = await _csrf(c, "/runs?job=many")
        form: dict[str, Any] = {"csrf": csrf, "action": "cancel", "job": "many"}
        confirm = await c.post("/runs/bulk", data=form)
        assert 'data-count="450"' in confirm.text
        fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', confirm.text))
        parts, page = 0, None
        while True:
            page = await c.post("/runs/bulk", data={**fields, "csrf": csrf})
            parts += 1
            if page.status_code == 303:
                break
            assert page.status_code == 200 and 'id="bulk-progress"' in page.text
            assert "of 450 runs so far" in page.text and "autosubmit.js" in page.text
            fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', page.text))
        assert parts >= 3 and "450+run%28s%29+cancelled" in page.headers["location"]
    assert await app._control.count_runs("cancel", job="many") == 0


async def test_bulk_part_refuses_a_bad_cursor(app: StackShift) -> None:
    from stackshift_redis.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="invalid cursor"):
        await app._control.bulk_part("cancel", job="x", cursor="0|1|zz|")
