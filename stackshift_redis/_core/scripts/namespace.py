"""The script of the namespace itself: its storage layout version and migration lock."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .door import Door


class NamespaceScripts(Door):
    """The namespace's layout script."""

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
    ) -> Any:
        """check | lock | renew | cursor | finish (lua/layout.lua says what each returns).
        Never gated: it is how the gate learns the layout."""
        k = self.keys
        keys = [k.meta(), k.migrating(), *markers]
        return await self.call("layout", keys, [op, layout, token, lock_ms, step, cursor])
