"""Loads lua/*.lua (inlining `-- @include` lines) and wraps each script in one typed method.

redis-py's `Script` does SHA caching, EVALSHA and reload on NOSCRIPT: no cache of our own.
Every call passes the namespace prefix as ARGV[1] where the script derives keys
(lua/lib/key.lua); all keys share the namespace hash tag, so each call is one slot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from .errors import from_redis_error
from .keys import GROUP, Keys

_INCLUDE = re.compile(r"^-- @include ([a-z_]+\.lua)\s*$")
_HERE = Path(__file__).resolve().parent


def lua_dir() -> Path:
    """The Lua sources: inside the wheel, or the repo's top-level lua/ in a checkout."""
    packaged = _HERE / "lua"
    return packaged if packaged.is_dir() else _HERE.parent / "lua"


def _render(path: Path, seen: set[str]) -> list[str]:
    out: list[str] = []
    for line in path.read_text().splitlines():
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        name = m.group(1)
        lib = lua_dir() / "lib" / name
        if not lib.is_file():
            raise FileNotFoundError(f"{path.name}: missing include {name}")
        if name not in seen:
            seen.add(name)
            out.extend(_render(lib, seen))
    return out


@cache
def source(name: str) -> str:
    """The full text of lua/<name>.lua with its includes inlined (each once, deps first)."""
    return "\n".join(_render(lua_dir() / f"{name}.lua", set())) + "\n"


def script_names() -> list[str]:
    """Every atomic operation: the top-level lua/*.lua files."""
    return sorted(p.stem for p in lua_dir().glob("*.lua"))


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Scripts:
    """One method per Lua script. `client` may be a Redis, RedisCluster or pipeline."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._scripts = {n: redis.register_script(source(n)) for n in script_names()}

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script; error replies become stackshift errors."""
        try:
            return await self._scripts[name](keys=list(keys), args=list(args))
        except ResponseError as exc:
            raise from_redis_error(exc) from exc

    async def queue_call(
        self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]
    ) -> None:
        """Add one script call to a pipeline.

        A Redis pipeline loads missing scripts before it runs (redis-py). A RedisCluster
        pipeline refuses EVALSHA and could not reload a script after NOSCRIPT, so there
        the call is queued as EVAL with the script's text (the server caches it too).
        """
        if isinstance(pipe, Pipeline):
            await self._scripts[name](keys=list(keys), args=list(args), client=pipe)
        else:
            pipe.eval(source(name), len(keys), *keys, *args)

    # runs
    def start_call(
        self,
        job: str,
        queue: str,
        runs: Sequence[tuple[str, str | None, bytes]],
        *,
        delay_ms: int,
        at_ms: int,
        idem_ttl_ms: int,
        extra: str = "",
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `start` for runs of (run_id, idempotency key or None, payload)."""
        k = self.keys
        keys = [k.stream(queue), k.delayed(queue)]
        args: list[Any] = [k.prefix, job, queue, delay_ms, at_ms, idem_ttl_ms, extra, len(runs)]
        for run_id, idem, payload in runs:
            keys += [k.run(run_id), k.idem(job, idem) if idem is not None else k.run(run_id)]
            args += [run_id, "1" if idem is not None else "0", payload]
        return keys, args

    async def start(
        self,
        job: str,
        queue: str,
        runs: Sequence[tuple[str, str | None, bytes]],
        *,
        delay_ms: int,
        at_ms: int,
        idem_ttl_ms: int,
        extra: str = "",
    ) -> list[tuple[str, bool]]:
        """Create and enqueue runs; returns (run_id, deduplicated) per run."""
        keys, args = self.start_call(
            job, queue, runs, delay_ms=delay_ms, at_ms=at_ms, idem_ttl_ms=idem_ttl_ms, extra=extra
        )
        return parse_start(await self.call("start", keys, args))

    async def claim(
        self,
        queue: str,
        entries: Sequence[tuple[str, str]],
        *,
        lease_ms: int,
        max_deliveries: int,
        retention_ms: int,
    ) -> list[list[Any]]:
        """Lease the runs of delivered (entry_id, run_id) pairs."""
        k = self.keys
        keys = [k.stream(queue), k.leases(queue), k.queue_conf(queue)]
        keys += [k.run(run_id) for _, run_id in entries]
        args: list[Any] = [k.prefix, GROUP, lease_ms, max_deliveries, retention_ms]
        for entry_id, run_id in entries:
            args += [entry_id, run_id]
        result: list[list[Any]] = await self.call("claim", keys, args)
        return result

    def complete_call(
        self, queue: str, run_id: str, token: str, result: bytes, retention_ms: int
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `complete`."""
        k = self.keys
        return [k.run(run_id), k.leases(queue)], [k.prefix, run_id, token, result, retention_ms]

    def fail_call(
        self,
        queue: str,
        run_id: str,
        token: str,
        error_json: str,
        outcome: str,
        delay_ms: int,
        retention_ms: int,
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `fail` (outcome: retry | failed | cancelled)."""
        k = self.keys
        keys = [k.run(run_id), k.leases(queue), k.delayed(queue)]
        return keys, [k.prefix, run_id, token, error_json, outcome, delay_ms, retention_ms]

    async def record_step(
        self, run_id: str, token: str, name: str, record: bytes, kind: str
    ) -> bool:
        """Store a step record; True when a cancel was requested for the run."""
        reply = await self.call(
            "record_step", [self.keys.run(run_id)], [run_id, token, name, record, kind]
        )
        return bool(reply)

    async def promote(self, queue: str, limit: int = 1000) -> tuple[int, int]:
        """Move due runs into the stream: (moved, ms to next due or -1)."""
        k = self.keys
        moved, wait = await self.call(
            "promote", [k.delayed(queue), k.stream(queue)], [k.prefix, limit]
        )
        return int(moved), int(wait)

    async def reclaim(self, queue: str, retention_ms: int, limit: int = 100) -> list[str]:
        """Re-queue runs with expired leases; returns their ids."""
        k = self.keys
        ids = await self.call(
            "reclaim", [k.leases(queue), k.stream(queue)], [k.prefix, limit, retention_ms]
        )
        return [_str(i) for i in ids]

    async def renew(self, queue: str, held: Sequence[tuple[str, str]], lease_ms: int) -> list[str]:
        """Extend leases of (run_id, token); per run 'ok' | 'cancel' | 'lost'."""
        k = self.keys
        keys = [k.leases(queue)] + [k.run(run_id) for run_id, _ in held]
        args: list[Any] = [lease_ms]
        for run_id, token in held:
            args += [run_id, token]
        return [_str(s) for s in await self.call("renew", keys, args)]

    async def cancel(self, run_id: str, reason: str, retention_ms: int) -> tuple[str, bool] | None:
        """Cancel a run: (status afterwards, whether this call changed it), None if unknown."""
        k = self.keys
        reply = await self.call("cancel", [k.run(run_id)], [k.prefix, run_id, reason, retention_ms])
        return (_str(reply[0]), bool(int(reply[1]))) if reply else None

    async def retry(self, run_id: str) -> bool:
        """Queue a failed run again; False when unknown."""
        k = self.keys
        return bool(await self.call("retry", [k.run(run_id)], [k.prefix, run_id]))

    async def watch(self, run_id: str) -> list[Any] | None:
        """Mark a run as awaited; its (status, result, error) or None."""
        reply = await self.call("watch", [self.keys.run(run_id)], [])
        return list(reply) if reply else None

    async def drop_consumer(self, queue: str, consumer: str) -> bool:
        """Delete a consumer of the queue's group if nothing is pending for it."""
        return bool(await self.call("drop_consumer", [self.keys.stream(queue)], [GROUP, consumer]))

    async def release(self, queue: str, entries: Sequence[tuple[str, str]]) -> int:
        """Give back (entry_id, run_id) entries read but not started."""
        args: list[Any] = [GROUP]
        for entry_id, run_id in entries:
            args += [entry_id, run_id]
        return int(await self.call("release", [self.keys.stream(queue)], args))


def parse_start(reply: Sequence[Any]) -> list[tuple[str, bool]]:
    """(run_id, deduplicated) pairs from a `start` reply."""
    return [(_str(reply[i]), bool(int(reply[i + 1]))) for i in range(0, len(reply), 2)]
