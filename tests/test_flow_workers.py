"""Per-key concurrency across real worker processes: the limit holds for every key at
once, and a worker SIGKILLed while holding slots gives them back when its lease is
recovered (no slot leaks, no key stays blocked)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from apps import obs_key
from apps.core_jobs import KEYED_OPTIONS
from helpers import observed, spawn_worker, wait_for

from stackshift_redis import StackShift


def _client(make_app: Callable[..., StackShift]) -> StackShift:
    client = make_app()
    client.job("keyed", lambda ctx: None, **KEYED_OPTIONS)  # the same rules as the workers
    return client


async def _slot_holders(client: StackShift, key: str) -> int:
    return int(await client.redis.scard(client._core.keys.slot("keyed", f"0:{key}")))


async def test_per_key_limit_holds_across_two_worker_processes(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = _client(make_app)
    procs += [
        spawn_worker(redis_url, client.namespace, "--queue", "flow", "--concurrency", "8")
        for _ in range(2)
    ]
    payloads = [{"k": k, "i": i} for i in range(8) for k in ("a", "b", "c")]
    runs = await client.start_many("keyed", payloads)
    await asyncio.gather(*(r.result(timeout=30) for r in runs))
    for k in "abc":
        assert await observed(client, f"max:{k}") == 2  # reached, never exceeded
        assert await observed(client, f"cur:{k}") == 0
        assert await _slot_holders(client, k) == 0
    assert await observed(client, "keyed_done") == 24


async def test_a_killed_worker_gives_its_slots_back(
    make_app: Callable[..., StackShift], redis_url: str, procs: list[Any]
) -> None:
    client = _client(make_app)
    ns = client.namespace
    # the victim runs only the hanging run (concurrency 1): no other execution dies with it
    procs.append(spawn_worker(redis_url, ns, "--queue", "flow", "--concurrency", "1"))
    hung = await client.start("keyed", {"k": "a", "hang": 1})

    async def hang_pid() -> int:
        raw = await client.redis.get(obs_key(ns, "hang_pid"))
        return int(raw) if raw else 0

    await wait_for(hang_pid, timeout=15)
    victim = await hang_pid()
    assert victim == procs[0].pid
    procs.append(spawn_worker(redis_url, ns, "--queue", "flow", "--concurrency", "4"))
    rest = await client.start_many("keyed", [{"k": "a", "i": i} for i in range(6)])
    os.kill(victim, signal.SIGKILL)
    await asyncio.gather(*(r.result(timeout=30) for r in [hung, *rest]))
    assert await observed(client, "max:a") <= 2
    assert await observed(client, "cur:a") == 0
    assert await _slot_holders(client, "a") == 0
    # the key is not blocked: a new batch runs at exactly the limit
    await client.redis.delete(obs_key(ns, "max:a"))
    again = await client.start_many("keyed", [{"k": "a", "j": i} for i in range(6)])
    await asyncio.gather(*(r.result(timeout=30) for r in again))
    assert await observed(client, "max:a") == 2
    assert await client.redis.zcard(client._core.keys.parked("keyed", "0:a")) == 0
    info = await client.get_run(str(hung.id))
    assert info is not None and "recovered" in [t["type"] for t in info.timeline]
