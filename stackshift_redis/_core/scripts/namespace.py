"""The scripts of the namespace itself: its storage layout version and migration lock,
and moving a key of an older layout to its name now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .door import Door


class NamespaceScripts(Door):
    """The namespace's layout scripts."""

    async def layout(
        self,
        op: str,
        *,
        layout: int,
        token: str = "",
        lock_ms: int = 0,
        step: str = "",
        cursor: str = "",
        markers: Sequence[str] = (),
        extra: int = 0,
        workers: bool = False,
        partitions: int = 1,
    ) -> Any:
        """check | lock | sweep | renew | cursor | finish | unlock | swept (lua/layout.lua
        says what each returns). `extra`: sweep: the least ms between two sweeps.
        `workers`: check also reports the oldest layout among live workers; `partitions`:
        check refuses another count than the recorded one. Never gated:
        it is how the gate learns the layout."""
        k = self.keys
        keys = [k.meta(), k.migrating(), k.workers(), k.worker_info(), *markers]
        args = [op, layout, token, lock_ms, step, cursor, extra, int(workers), partitions]
        return await self.call("layout", keys, args)

    async def move_key(
        self, old: str, new: str, *, merge: str = "keep", run: str = "", field: str = ""
    ) -> bool:
        """Give key `old` the name `new` (a migration step; lua/move_key.lua), and the field
        `field` of run hash `run` that names it; False when there was nothing to move."""
        args = [merge, field]
        return bool(await self.call("move_key", [old, new, run or old], args))
