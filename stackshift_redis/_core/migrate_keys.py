"""The migration step `escape_key_names` (layout 3, issue 23): key names of names with ':'.

A step `async def convert(ns, cursor, limit) -> next cursor | None` (registered in
`migrations.MIGRATIONS`, whose docstring has the rules): it converts up to `limit` items
after `cursor` ("" or "0" at first) and returns the cursor to go on from, or None when
nothing is left. Idempotent (a key converted already is left alone) and safe after a crash
halfway (each key moves in one script), so running it again from any cursor, or from the
start (the rolling-deploy sweep), converts nothing twice. `ns` is the Namespace, typed
`Any` (importing `.namespace` here would be a cycle: namespace -> layout -> migrations).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio.cluster import RedisCluster

from .keys import NAME_RE, scan_pattern

log = logging.getLogger("stackshift.layout")

_QUEUE = {
    "stream": "stream",
    "ring": "ring",
    "stat": "queue_stat",
    "delayed": "delayed",
    "leases": "leases",
    "conf": "queue_conf",
    "min": "minutes",  # per-minute counts (issue 27): no release of layout 1 wrote them
}
_FLOW = {
    "thr": "throttle",
    "thrlog": "throttle_log",
    "rate": "rate_limit",
    "deb": "debounce",
    "one": "singleton",
}
_SLOT = {"slot": "slot", "park": "parked"}
_EVENT = {"shapes": "event_shapes", "log": "event_log", "data": "event_data"}


async def escape_key_names(ns: Any, cursor: str, limit: int) -> str | None:
    """Issue 23: a job, queue or event name with ':' is escaped in key names now (keys.py:
    every part but the last). Renames the keys of layout 1 (6707af1) that such names
    changed: idempotency keys (and the run field naming one), the keys of a queue,
    flow-control keys (and a singleton's run field) and event keys. One SCAN batch of the
    namespace's keys per call (`limit`: SCAN's COUNT; the cursor is SCAN's); keys of names
    without ':' are left alone, as is every key converted already."""
    after, found = await _scan(ns, cursor or "0", limit)
    for raw in found:
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        move = await _new_name(ns, key)
        if move is not None and move[0] != key:
            new, merge, run, field = move
            await ns.scripts.move_key(key, new, merge=merge, run=run, field=field)
    return None if after == "0" else after


async def _scan(ns: Any, cursor: str, limit: int, match: str = "") -> tuple[str, list[Any]]:
    """One SCAN of the keys of the four families a name is part of, or of `match` (on a
    cluster: on the node that holds the namespace)."""
    match = match or scan_pattern(ns.keys.prefix, "iqfe")
    r = ns.redis
    if isinstance(r, RedisCluster):
        node = r.get_node_from_key(ns.keys.prefix)
        reply: Any = await r.execute_command(
            "SCAN", cursor, "MATCH", match, "COUNT", limit, target_nodes=node
        )
    else:
        reply = await r.execute_command("SCAN", cursor, "MATCH", match, "COUNT", limit)
    after, keys = reply
    if isinstance(after, dict):  # a cluster client answers {node: cursor}
        after = next(iter(after.values()))
    return (after.decode() if isinstance(after, bytes) else str(after)), list(keys)


async def _new_name(ns: Any, key: str) -> tuple[str, str, str, str] | None:
    """(new key, hash merge, run hash, run field naming the key) for a key of layout 1
    whose name part holds ':', else None."""
    k = ns.keys
    family, _, rest = key[len(k.prefix) :].partition(":")
    segs = rest.split(":")
    if family == "idem":
        return await _idem(ns, key, rest)
    if family == "q" and len(segs) >= 3:
        return await _queue_key(ns, key, segs)
    if family == "fc" and len(segs) >= 4 and segs[-3] in _SLOT and segs[-2].isdigit():
        job, slot = ":".join(segs[:-3]), f"{segs[-2]}:{segs[-1]}"
        return (k.render(_SLOT[segs[-3]], job, slot), "keep", "", "") if ":" in job else None
    if family == "fc" and len(segs) >= 3 and segs[-2] in _FLOW:
        job, shape = ":".join(segs[:-2]), _FLOW[segs[-2]]
        if ":" not in job:
            return None
        run = ""
        if shape == "singleton":  # its run names the key (`sgl`, released when it ends)
            holder = await ns.redis.get(key)
            run = k.run(holder.decode()) if holder else ""
        return k.render(shape, job, segs[-1]), "keep", run, "sgl" if run else ""
    if family == "ev" and len(segs) >= 2 and segs[-1] in _EVENT:
        event = ":".join(segs[:-1])
        return (k.render(_EVENT[segs[-1]], event), "keep", "", "") if ":" in event else None
    if family == "ev" and len(segs) >= 4 and segs[-3] == "w":
        event = ":".join(segs[:-3])
        if ":" not in event:
            return None
        return k.event_waiters(event, segs[-2], segs[-1]), "keep", "", ""
    return None


async def _queue_key(ns: Any, key: str, segs: list[str]) -> tuple[str, str, str, str] | None:
    """A queue's key: `q:<queue>:<what>` or `q:<queue>:ready:<group>`. A queue name with a
    segment `ready` can be read both ways: the reading whose queue is known (in the job
    map or the live queues) wins; with none known the key is left as it is, logged."""
    k = ns.keys
    readings: list[tuple[str, str, tuple[str, ...]]] = []  # (queue, shape, args)
    if segs[-1] in _QUEUE:
        queue = ":".join(segs[:-1])
        readings.append((queue, _QUEUE[segs[-1]], (queue,)))
    for i in range(1, len(segs) - 1):
        if segs[i] == "ready":
            queue, group = ":".join(segs[:i]), ":".join(segs[i + 1 :])
            readings.append((queue, "ready", (queue, group)))
    readings = [r for r in readings if NAME_RE.match(r[0])]  # a valid queue name
    if len(readings) > 1:
        known = {q.decode() for q in await ns.redis.hvals(k.jobs())}
        known |= {q.decode() for q in await ns.redis.zrange(k.qlive(), 0, -1)}
        readings = [r for r in readings if r[0] in known]
        if len(readings) != 1:
            log.warning(
                "migration: key %s: its queue is unclear (a queue name with a 'ready' "
                "part); left as it is",
                key,
            )
            return None
    if not readings or ":" not in readings[0][0]:
        return None
    _, shape, args = readings[0]
    return k.render(shape, *args), "sum" if shape == "queue_stat" else "keep", "", ""


async def _idem(ns: Any, key: str, rest: str) -> tuple[str, str, str, str] | None:
    """An idempotency key `idem:<job>:<key>`: its job is that of the run it names (a key
    naming no run any more is left to expire: a start treats it as absent)."""
    run_id = await ns.redis.get(key)
    if run_id is None:
        return None
    run = ns.keys.run(run_id.decode())
    job = await ns.redis.hget(run, "job")
    name = job.decode() if job is not None else ""
    if ":" not in name or not rest.startswith(name + ":"):
        return None
    return ns.keys.idem(name, rest[len(name) + 1 :]), "keep", run, "idem_key"
