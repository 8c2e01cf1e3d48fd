"""The migration step `untimed_indexes` (layout 4, issue 22): queued and running runs have
no time index any more.

Until layout 3 every status transition moved a run between four sorted sets: `idx` and
`idxj` (scored by when it entered the status) and `ord` and `ordj` (by id, for paging).
Nothing reads when a run became queued or running, so layout 4 keeps only the id-ordered
pair for those two statuses (lua/lib/move_index.lua); the idx/idxj sets of queued and
running are deleted here. Every run in them is in the `ord`/`ordj` sets of its status too
(every layout wrote both), so no run is lost to any read. Idempotent: a key deleted
already is simply not found; a process of release 6707af1 that still writes these keys
during a rolling deploy has them deleted again by the sweep.
"""

from __future__ import annotations

from typing import Any

from .keys import UNTIMED, parse, scan_pattern
from .migrate_keys import _scan


async def drop_untimed_indexes(ns: Any, cursor: str, limit: int) -> tuple[str | None, int]:
    """One SCAN batch (`limit`: SCAN's COUNT) of the namespace's `i*` keys; the indexes of
    queued and running are unlinked. Returns (next cursor or None, keys deleted)."""
    k = ns.keys
    after, found = await _scan(ns, cursor or "0", limit, scan_pattern(k.prefix, "i"))
    doomed = []
    for raw in found:
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        shape = parse(k.prefix, key)
        if shape and shape[0] in ("idx_status", "idx_job_status") and shape[1][-1] in UNTIMED:
            doomed.append(key)
    for key in doomed:  # one key per call: on a cluster, keys of one slot anyway
        await ns.redis.unlink(key)
    return (None if after == "0" else after), len(doomed)
