"""The migration step `untimed_indexes` (layout 4, issue 22): queued runs have no time index
any more, running runs no index at all.

Until layout 3 every status transition moved a run between four sorted sets: `idx` and
`idxj` (scored by when it entered the status) and `ord` and `ordj` (by id, for paging).
Nothing reads when a run became queued, and running runs are the members of their queues'
leases (bounded by the workers' concurrency), so layout 4 keeps only `ord`/`ordj` for
queued and nothing for running (lua/lib/move_index.lua); list_runs reads running runs from
the leases of the queues in `keys.leased_queues()` (take.lua adds a queue there when it
leases from it). This step deletes the idx/idxj sets of queued and running and the
ord/ordj sets of running, and adds every queue with a leases key to `leased_queues`. No
run is lost to any read: a queued run is in `ord` too (every layout wrote both), a running
one in its queue's leases. Idempotent: a key deleted already is not found, a queue added
already is added again; a process of release 6707af1 that still writes these keys during
a rolling deploy has them deleted again by the sweep.
"""

from __future__ import annotations

from typing import Any

from .keys import UNTIMED, parse, scan_pattern
from .migrate_keys import _scan


def _doomed(shape: str, args: tuple[str, ...]) -> bool:
    if shape in ("idx_status", "idx_job_status"):
        return args[-1] in UNTIMED
    return shape in ("ord_status", "ord_job_status") and args[-1] == "running"


async def drop_untimed_indexes(ns: Any, cursor: str, limit: int) -> tuple[str | None, int]:
    """One SCAN batch (`limit`: SCAN's COUNT) of the namespace's `i*`, `o*` and `q*` keys:
    the indexes of layout 3 that layout 4 no longer keeps are unlinked, the queues with a
    leases key noted in `leased_queues`. Returns (next cursor or None, keys deleted)."""
    k = ns.keys
    after, found = await _scan(ns, cursor or "0", limit, scan_pattern(k.prefix, "ioq"))
    doomed: list[str] = []
    queues: list[str] = []
    for raw in found:
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        reading = parse(k.prefix, key)
        if reading is None:
            continue
        if _doomed(*reading):
            doomed.append(key)
        elif reading[0] == "leases":
            queues.append(reading[1][0])
    if queues:
        await ns.redis.sadd(k.leased_queues(), *queues)
    for key in doomed:  # one key per call: on a cluster, keys of one slot anyway
        await ns.redis.unlink(key)
    return (None if after == "0" else after), len(doomed)
