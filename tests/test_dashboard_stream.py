"""The dashboard's `GET /runs/{run_id}/stream` (Server-Sent Events, through httpx, no
browser): messages with their ids in order, the end event, Last-Event-ID and ?topic=,
a live run, keepalive comments, 404 / 400, and the same authentication as the pages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from helpers import wait_for

from stackshift_redis import RunContext, StackShift
from stackshift_redis.dashboard import create_app, streaming


def _client(asgi: Any, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://t", **kwargs)


def events(text: str) -> list[dict[str, Any]]:
    """The events of an SSE body: {event, id, data (parsed JSON)}; comments as {comment}."""
    out: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        ev: dict[str, Any] = {"event": "message"}
        data: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if line.startswith(":"):
                ev = {"comment": line[1:].strip()}
            elif field == "data":
                data.append(value)
            elif field in ("event", "id", "retry"):
                ev[field] = value
        if data:
            ev["data"] = json.loads("\n".join(data))
        out.append(ev)
    return out


async def test_a_finished_runs_messages_then_the_end(app: StackShift, running_worker: Any) -> None:
    @app.job("talk")
    async def talk(ctx: RunContext) -> str:
        for i in range(4):
            await ctx.publish({"i": i, "text": "line\nbreak"} if i == 3 else {"i": i})
        await ctx.publish(100, topic="progress")
        return "ok"

    run = await app.start("talk")
    running_worker(app)
    await run.result(timeout=10)
    async with _client(create_app(app)) as c:
        r = await c.get(f"/runs/{run.id}/stream")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        evs = events(r.text)
        assert evs[0] == {"event": "message", "retry": str(streaming.RETRY_MS)}
        msgs = [e for e in evs[1:] if e["event"] == "message"]
        assert [m["data"]["data"] for m in msgs] == [
            {"i": 0}, {"i": 1}, {"i": 2}, {"i": 3, "text": "line\nbreak"}, 100
        ]  # fmt: skip
        assert [m["id"] for m in msgs] == [m["data"]["id"] for m in msgs]
        assert msgs[-1]["data"]["topic"] == "progress" and msgs[0]["data"]["attempt"] == 1
        assert evs[-1] == {"event": "end", "data": {"status": "completed"}}

        resumed = events((await c.get(f"/runs/{run.id}/stream",
                                      headers={"Last-Event-ID": msgs[1]["id"]})).text)  # fmt: skip
        assert [e["id"] for e in resumed if "id" in e] == [m["id"] for m in msgs[2:]]
        one = events((await c.get(f"/runs/{run.id}/stream", params={"topic": "progress"})).text)
        assert [e["data"]["data"] for e in one if "id" in e] == [100]

        assert (await c.get("/runs/0000000000000000deadbeef/stream")).status_code == 404
        bad = await c.get(f"/runs/{run.id}/stream", headers={"Last-Event-ID": "nope"})
        assert bad.status_code == 400


async def test_a_live_run_streams_as_it_publishes_with_keepalives(
    app: StackShift, running_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "KEEPALIVE_S", 0.05)
    gate = asyncio.Event()

    @app.job("slow")
    async def slow(ctx: RunContext) -> None:
        await gate.wait()
        for i in range(10):
            await ctx.publish(i)
            await asyncio.sleep(0.01)

    run = await app.start("slow")
    running_worker(app)
    async with _client(create_app(app)) as c:
        request = asyncio.create_task(c.get(f"/runs/{run.id}/stream"))
        # the response is open (it follows the run: marked) and quiet: keepalive comments
        await wait_for(lambda: app.redis.hexists(app._core.keys_of(run.id).run(run.id), "out"), 20)
        await asyncio.sleep(0.4)
        gate.set()
        evs = events((await asyncio.wait_for(request, 15)).text)
    assert {"comment": "keepalive"} in evs
    assert [e["data"]["data"] for e in evs if "id" in e] == list(range(10))
    assert evs[-1] == {"event": "end", "data": {"status": "completed"}}


async def test_the_stream_needs_the_same_authentication(app: StackShift) -> None:
    app.job("j", lambda ctx: None)
    run = await app.start("j", delay=600)
    await app.cancel(run.id)
    async with _client(create_app(app, token="s3cret")) as c:
        assert (await c.get(f"/runs/{run.id}/stream")).status_code == 401
        ok = await c.get(f"/runs/{run.id}/stream", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert events(ok.text)[-1] == {"event": "end", "data": {"status": "cancelled"}}
    async with _client(create_app(app, basic_auth="ops:pw")) as c:
        assert (await c.get(f"/runs/{run.id}/stream")).status_code == 401
        assert (await c.get(f"/runs/{run.id}/stream", auth=("ops", "pw"))).status_code == 200
