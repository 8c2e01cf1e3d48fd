"""A namespace runs under a Redis ACL user restricted to its own keys, with exactly the
rule the README documents; another namespace's keys are out of its reach."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis as syncredis
from helpers import ClusterClient

from stackshift_redis import RunContext, StackShift

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_rule() -> list[str]:
    """The ACL SETUSER arguments after the user name, as the README gives them."""
    m = re.search(r"ACL SETUSER (\S+) (.+)", README.read_text())
    assert m, "the README documents an ACL SETUSER line"
    return m.group(2).strip().rstrip("`").split()


def _apply(redis_server: Any, user: str, namespace: str) -> None:
    args = [a.replace("shop", namespace).replace(">CHANGE-ME", ">pw") for a in documented_rule()]
    for url in redis_server.node_urls:
        admin = syncredis.Redis.from_url(url)
        try:
            admin.execute_command("ACL", "SETUSER", user, "reset", *args)
        finally:
            admin.close()


def _drop(redis_server: Any, user: str) -> None:
    for url in redis_server.node_urls:
        admin = syncredis.Redis.from_url(url)
        try:
            admin.execute_command("ACL", "DELUSER", user)
        finally:
            admin.close()


async def test_a_full_flow_under_the_documented_acl_user(redis_server: Any) -> None:
    ns = f"acl{uuid.uuid4().hex[:8]}"
    user = f"u{ns}"
    _apply(redis_server, user, ns)
    port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    if redis_server.is_cluster:
        client: Any = ClusterClient(host="127.0.0.1", port=port, username=user, password="pw")
        app = StackShift(redis=client, namespace=ns)
    else:
        client = None
        app = StackShift(f"redis://{user}:pw@127.0.0.1:{port}/0", namespace=ns)
    try:

        @app.job("flow")
        async def flow(ctx: RunContext) -> int:
            a: int = await ctx.step.run("a", lambda: 1)
            await ctx.step.sleep("nap", 0.05)
            evt = await ctx.step.wait_for_event("w", event="go", match={"k": 1}, lookback=5)
            kid = await ctx.step.invoke("kid", job="child", payload=2)
            await ctx.progress(0.5)
            await ctx.state.incr("n")
            async with ctx.state.lock("L", ttl=2):
                pass
            assert evt is not None
            return a + int(kid)

        app.job("child", lambda ctx: ctx.payload * 10)
        worker = app.worker(poll_interval=0.05, block_ms=200)
        task = asyncio.create_task(worker.run())
        run = await app.start("flow", idempotency_key="once")
        await app.send_event("go", {"k": 1})
        assert await run.result(timeout=15) == 21
        assert await app.state.get("n") == 1
        assert [r.id for r in await app.list_runs(job="flow")] == [run.id]
        assert await app.cancel(run.id) is False
        await worker.stop()
        await task
        with pytest.raises(syncredis.exceptions.NoPermissionError):
            await app.redis.get("ss:{other}:st:secret")  # another namespace's key
    finally:
        await app.close()
        if client is not None:
            await client.aclose()
        _drop(redis_server, user)
