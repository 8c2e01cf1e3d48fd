"""The dashboard as an ASGI app (httpx, no browser): pages, actions with CSRF, read-only,
authentication, mounting under a prefix, and clear pages for bad input and Redis down."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from helpers import namespace_keys, wait_for
from starlette.applications import Starlette
from starlette.routing import Mount

from stackshift_redis import RunContext, StackShift
from stackshift_redis.dashboard import create_app


def _client(asgi: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t", **kwargs)


async def _csrf(client: httpx.AsyncClient, path: str) -> str:
    page = await client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def _jobs(app: StackShift) -> None:
    app.job("ok", lambda ctx: {"done": True}, queue="dash")

    def boom(ctx: RunContext) -> None:
        raise RuntimeError("kaput")

    app.job("bad", boom, queue="dash", retries=0)


async def test_pages_list_runs_and_show_a_failed_one(app: StackShift, running_worker: Any) -> None:
    _jobs(app)
    ok = await app.start("ok", {"n": 1})
    bad = await app.start("bad", {"n": 2})
    running_worker(app)
    await ok.result(timeout=10)
    await wait_for(lambda: _status_is(app, bad.id, "failed"))
    async with _client(create_app(app)) as c:
        home = await c.get("/")
        assert home.status_code == 200 and 'data-queue="dash"' in home.text
        runs = await c.get("/runs")
        assert ok.id in runs.text and bad.id in runs.text
        failed = await c.get("/runs", params={"status": "failed"})
        assert bad.id in failed.text and ok.id not in failed.text
        by_job = await c.get("/runs", params={"job": "ok"})
        assert ok.id in by_job.text and bad.id not in by_job.text
        page = await c.get(f"/runs/{bad.id}")
        assert page.status_code == 200 and "kaput" in page.text and "Traceback" in page.text
        assert (await c.get("/events")).status_code == 200
        assert (await c.get("/schedules")).status_code == 200


async def test_runs_pages_follow_the_cursor(app: StackShift) -> None:
    app.job("many", lambda ctx: None, queue="dash")
    ids = [r.id for r in await app.start_many("many", [None] * 120)]
    async with _client(create_app(app)) as c:
        seen: list[str] = []
        url: str | None = "/runs"
        while url:
            page = await c.get(url)
            seen += re.findall(r'data-run="([0-9a-f-]+)"', page.text)
            nxt = re.search(r'class="next" href="([^"]+)"', page.text)
            url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == ids[::-1]


async def test_actions_need_the_csrf_token_and_are_refused_read_only(app: StackShift) -> None:
    _jobs(app)
    run = await app.start("ok", delay=600)
    before = await namespace_keys(app)
    async with _client(create_app(app)) as c:
        refused = await c.post(f"/runs/{run.id}/cancel", data={"csrf": "forged"})
        assert refused.status_code == 403 and "CSRF" in refused.text
        assert (await c.post("/events", data={"name": "x"})).status_code == 403
        assert await namespace_keys(app) == before
        token = await _csrf(c, f"/runs/{run.id}")
        done = await c.post(f"/runs/{run.id}/cancel", data={"csrf": token})
        assert done.status_code == 303 and done.headers["location"].startswith(f"/runs/{run.id}")
    assert await app.run(run.id).status() == "cancelled"
    async with _client(create_app(app, read_only=True)) as c:
        page = await c.get(f"/runs/{run.id}")
        assert "read-only" in page.text and 'name="csrf"' not in page.text
        assert (await c.post(f"/runs/{run.id}/retry", data={"csrf": "x"})).status_code == 405
        assert (await c.post("/events", data={"name": "x"})).status_code == 405


async def test_send_event_from_the_form_and_malformed_json(app: StackShift) -> None:
    async with _client(create_app(app)) as c:
        token = await _csrf(c, "/events")
        before = await namespace_keys(app)
        bad = await c.post("/events", data={"csrf": token, "name": "e", "data": "{nope"})
        assert bad.status_code == 400 and "not valid JSON" in bad.text and "{nope" in bad.text
        badname = await c.post("/events", data={"csrf": token, "name": "bad name!", "data": ""})
        assert badname.status_code == 400 and "invalid event name" in badname.text
        assert await namespace_keys(app) == before
        sent = await c.post(
            "/events", data={"csrf": token, "name": "order.paid", "data": '{"a": 1}', "id": "e1"}
        )
        assert sent.status_code == 303
        page = await c.get(sent.headers["location"])
        assert "resumed 0" in page.text and "order.paid" in page.text and "e1" in page.text


async def test_unknown_run_empty_namespace_and_redis_down(app: StackShift) -> None:
    async with _client(create_app(app)) as c:
        missing = await c.get("/runs/0000000000000000deadbeef")
        assert missing.status_code == 404 and "Run not found" in missing.text
        home = await c.get("/")
        assert "No queues known" in home.text and "No worker" in home.text
        assert "No runs match" in (await c.get("/runs")).text
        assert "invalid cursor" in (await c.get("/runs", params={"cursor": "zz"})).text
    down = StackShift("redis://127.0.0.1:1/0", namespace="down")
    try:
        async with _client(create_app(down)) as c:
            page = await c.get("/")
            assert page.status_code == 503
            assert "Redis is unreachable" in page.text and "redis://127.0.0.1:1/0" in page.text
    finally:
        await down.close()


async def test_token_and_basic_auth(app: StackShift) -> None:
    async with _client(create_app(app, token="s3cret")) as c:
        assert (await c.get("/")).status_code == 401
        ok = await c.get("/", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        first = await c.get("/runs", params={"token": "s3cret", "job": "x"})  # a browser
        assert first.status_code == 303 and first.headers["location"] == "/runs?job=x"
        assert "stackshift_session" in first.headers["set-cookie"]  # signed; not the token
        assert "s3cret" not in first.headers["set-cookie"]
        assert (await c.get("/runs")).status_code == 200
    async with _client(create_app(app, basic_auth="ops:pw")) as c:
        challenge = await c.get("/")
        assert challenge.status_code == 401 and "Basic" in challenge.headers["www-authenticate"]
        assert (await c.get("/", auth=("ops", "pw"))).status_code == 200
        assert (await c.get("/", auth=("ops", "nope"))).status_code == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer", "bEaReR"])
async def test_the_auth_scheme_is_matched_in_any_case(app: StackShift, scheme: str) -> None:
    """Issue 23, defect 5: `bearer <token>` got 401 (RFC 7235: the scheme is
    case-insensitive). The credentials themselves stay case-sensitive."""
    async with _client(create_app(app, token="s3cret")) as c:
        ok = await c.get("/", headers={"Authorization": f"{scheme} s3cret"})
        assert ok.status_code == 200
        wrong = await c.get("/", headers={"Authorization": f"{scheme} S3CRET"})
        assert wrong.status_code == 401
    basic = scheme.replace("earer", "asic").replace("EARER", "ASIC").replace("EaReR", "AsIc")
    async with _client(create_app(app, basic_auth="ops:pw")) as c:
        ok = await c.get("/", headers={"Authorization": f"{basic}  b3BzOnB3"})  # ops:pw
        assert ok.status_code == 200
        bad = await c.get("/", headers={"Authorization": f"{basic} not-base64!"})
        assert bad.status_code == 401


async def test_mounted_under_a_prefix(app: StackShift) -> None:
    _jobs(app)
    run = await app.start("ok", delay=600)
    outer = Starlette(routes=[Mount("/ops", app=create_app(app))])
    async with _client(outer) as c:
        page = await c.get("/ops/runs")
        assert (
            f'href="/ops/runs/{run.id}"' in page.text and "/ops/static/dashboard.css" in page.text
        )
        assert (await c.get("/ops/static/htmx.min.js")).status_code == 200
        token = await _csrf(c, f"/ops/runs/{run.id}")
        done = await c.post(f"/ops/runs/{run.id}/cancel", data={"csrf": token})
        assert done.headers["location"].startswith(f"/ops/runs/{run.id}")


async def _status_is(app: StackShift, run_id: str, status: str) -> bool:
    return bool(await app.run(run_id).status() == status)


@pytest.mark.parametrize("path", ["/", "/runs", "/events", "/schedules"])
async def test_pages_render_on_an_empty_namespace(app: StackShift, path: str) -> None:
    async with _client(create_app(app)) as c:
        page = await c.get(path)
    assert page.status_code == 200 and "<main>" in page.text


async def test_schedules_page_lists_schedules(app: StackShift) -> None:
    _jobs(app)
    await app.schedules.create("nightly", job="ok", cron="30 2 * * *")
    await app.schedules.create("often", job="ok", every=300)
    await app.schedules.pause("often")
    async with _client(create_app(app)) as c:
        page = await c.get("/schedules")
    assert page.status_code == 200
    rows = re.findall(r"<tr><td><strong>([^<]+)</strong>", page.text)
    assert rows == ["nightly", "often"]
    assert "30 2 * * *" in page.text and "every 300 s" in page.text
