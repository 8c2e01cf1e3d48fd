"""The scripts of published job definitions (`_core/definitions.py`)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .door import Door

Published = tuple[str, str, str, str, int]  # job, definition JSON, queue, key-less plan, version


class DefinitionScripts(Door):
    """Publishing job definitions."""

    async def publish_defs(self, defs: Sequence[Published]) -> str:
        """Publish definitions (lua/publish_defs.lua); the revision after publishing."""
        reply = await self.call("publish_defs", [self.keys.defs()], [json.dumps(list(defs))])
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def mirror_defs(self, rev: str, flat: Sequence[str]) -> str:
        """Copy the namespace's definitions at revision `rev` (`flat`: field, value, ...)
        into this partition's copy unless it is as new (lua/mirror_defs.lua); its revision."""
        reply = await self.call("mirror_defs", [self.keys.defs()], [rev, json.dumps(list(flat))])
        return reply.decode() if isinstance(reply, bytes) else str(reply)
