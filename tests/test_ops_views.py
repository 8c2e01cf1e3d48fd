"""Operators, round 2: the run page and `runs show` show each step's result or error and
duration, what a waiting run waits for and until when, and links between runs."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from click.testing import CliRunner
from helpers import wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis._client.views import until
from stackshift_redis._ops.cli import main
from stackshift_redis.dashboard import create_app


def _jobs(app: StackShift) -> None:
    async def signer(ctx: RunContext) -> str:
        sig = await ctx.step.run("sign", lambda: "sig-1")
        await ctx.step.run("big", lambda: {"rows": list(range(300))})
        await ctx.step.sleep("nap", 7200)
        return str(sig)

    async def payer(ctx: RunContext) -> Any:
        evt = await ctx.step.wait_for_event(
            "pay", event="paid", match={"id": ctx.payload}, timeout=3600
        )
        return evt.data if evt else None

    app.job("signer", signer, queue="views")
    app.job("payer", payer, queue="views")


async def _cli(app: StackShift, url: str, cluster: bool, *args: str) -> Any:
    base = ["--redis-url", url, "--namespace", app.namespace, *(["--cluster"] * cluster)]
    return await asyncio.to_thread(CliRunner().invoke, main, [*base, *args])


async def test_steps_and_waits_are_shown(
    app: StackShift, running_worker: Any, redis_url: str, is_cluster: bool
) -> None:
    _jobs(app)
    sleeper = await app.start("signer")
    payer = await app.start("payer", "order-7")
    running_worker(app)

    async def waiting() -> bool:
        return all([await app.run(r.id).status() == "waiting" for r in (sleeper, payer)])

    await wait_for(waiting)
    asgi = create_app(app)
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        page = (await c.get(f"/runs/{sleeper.id}")).text
        assert 'data-step="sign"' in page and "&#34;sig-1&#34;" in page
        assert "<details><summary>" in page  # the long result is collapsed
        due = r"until <time[^>]*>[^<]+ UTC</time> <span class=\"due\">\(in 1 h 59 m"
        assert re.search(due, page)
        page = (await c.get(f"/runs/{payer.id}")).text
        assert "event <code>paid</code> matching <code>id</code>" in page
        assert "timeout at" in page and "(in 59 m" in page
    shown = await _cli(app, redis_url, is_cluster, "runs", "show", sleeper.id)
    assert shown.exit_code == 0, shown.output
    assert '"sig-1"' in shown.output and "step nap: a timer (sleep), until" in shown.output
    assert "(in 1 h 59 m" in shown.output and "until=17" not in shown.output
    shown = await _cli(app, redis_url, is_cluster, "runs", "show", payer.id, "--json")
    assert '"event": "paid"' in shown.output
    listed = await _cli(app, redis_url, is_cluster, "events", "list")
    assert "(in 59 m" in listed.output and "(in 1 h 59 m" in listed.output, listed.output
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        page = (await c.get("/events")).text
        assert "(in 59 m" in page and "(in 1 h 59 m" in page


async def test_replay_links_and_copied_steps_in_order(
    app: StackShift, running_worker: Any, redis_url: str, is_cluster: bool
) -> None:
    async def three(ctx: RunContext) -> int:
        a = await ctx.step.run("a", lambda: 1)
        b = await ctx.step.run("b", lambda: 2)
        c = await ctx.step.run("c", lambda: 3)
        return int(a + b + c)

    app.job("three", three, queue="views")
    running_worker(app)
    first = await app.start("three")
    assert await first.result(timeout=10) == 6
    again = await app.replay(first.id, from_step="c")
    assert await again.result(timeout=10) == 6
    info = await app.get_run(again.id)
    assert info is not None and list(info.steps) == ["a", "b", "c"]
    shown = await _cli(app, redis_url, is_cluster, "runs", "show", again.id)
    assert re.search(r"\ba\W+copied", shown.output) and "replay of" in shown.output
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(app)), base_url="http://t"
    ) as c:
        page = (await c.get(f"/runs/{first.id}")).text
        assert f'data-link="replayed as" href="/runs/{again.id}"' in page


def test_until_in_words() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert until(now + timedelta(hours=1, minutes=59, seconds=30), now) == "in 1 h 59 m"
    assert until(now + timedelta(seconds=42), now) == "in 42 s"
    assert until(now - timedelta(minutes=3), now) == "3 m 0 s ago"
    assert until(None, now) == "-"
