"""Redis unreachable: one line naming the server and the cause, then backoff until it is back.

A worker started before its Redis (container start order) or cut off from it waits with
exponential backoff (capped) instead of exiting or logging a traceback per retry; it says
once that Redis is unreachable and once that it is reachable again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._core.namespace import Namespace
from .._core.scripts import CONNECTION_ERRORS

log = logging.getLogger("stackshift.worker")
# what the Lua door counts as unreachable (CLUSTERDOWN included), and a socket's OSError
UNAVAILABLE = (*CONNECTION_ERRORS, OSError)
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 10.0


def describe_server(ns: Namespace) -> str:
    """The Redis a namespace talks to, for logs: its URL without a password, or the client."""
    if ns.redis_url is not None:
        parts = urlsplit(ns.redis_url)
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
        return ns.redis_url
    client: Any = ns.redis
    nodes = getattr(client, "startup_nodes", None) or getattr(
        getattr(client, "nodes_manager", None), "startup_nodes", None
    )
    if nodes:
        return "cluster " + ",".join(str(n) for n in list(nodes)[:3])
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    return f"redis://{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


def cause(exc: BaseException) -> str:
    """A short cause: the innermost message redis-py gives."""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


class Outage:
    """Tracks whether Redis is reachable for one worker; shared by its loops. On a cluster
    one master down fails some loops' calls while others reach the rest: Redis counts as
    reachable again once every loop that failed has succeeded (no line per turn)."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.since: float | None = None
        self._failing: dict[str, float] = {}  # loop -> its next backoff delay

    @property
    def down(self) -> bool:
        """True while the last Redis call of some loop failed to connect."""
        return self.since is not None

    async def failed(self, exc: BaseException, loop: str = "setup") -> None:
        """A call of `loop` failed to reach Redis: log it once, then sleep with backoff."""
        if self.since is None:
            self.since = time.monotonic()
            log.error(
                "cannot reach Redis at %s: %s; retrying with backoff until it is reachable",
                describe_server(self.ns),
                cause(exc),
            )
        delay = self._failing.get(loop, BACKOFF_FIRST_S)
        self._failing[loop] = min(BACKOFF_CAP_S, delay * 2)
        await asyncio.sleep(delay)

    def ok(self, loop: str = "setup") -> None:
        """A call of `loop` reached Redis: log the recovery once no loop is failing."""
        self._failing.pop(loop, None)
        if self.since is not None and not self._failing:
            log.warning(
                "Redis at %s is reachable again (after %.1fs)",
                describe_server(self.ns),
                time.monotonic() - self.since,
            )
            self.since = None

    async def wait_until_reachable(self, stopping: asyncio.Event) -> bool:
        """Ping until Redis answers (True) or `stopping` is set (False)."""
        while not stopping.is_set():
            try:
                await self.ns.redis.ping()
                self.ok()
                return True
            except UNAVAILABLE as exc:
                await self.failed(exc)
        return False


async def unless_set(stop: asyncio.Event, work: Awaitable[None]) -> None:
    """Await `work`, or cancel it when `stop` is set first (a worker asked to stop while it
    waits for another process's migration, or migrates: the next process resumes it)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
    if not task.cancelled():
        task.result()
