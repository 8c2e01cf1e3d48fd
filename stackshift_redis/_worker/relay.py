"""The outbox relay: with partitions, what a script must do to a run on another partition
(start an invoked child, settle its parent's wait, cancel a child, record a transactional
step, send an event's leg, make a transactional step's start) goes in its own
partition's outbox stream in the same atomic call (lua/lib/elsewhere.lua). Every worker
reads the outboxes through the consumer group `relay`, applies each entry on the run's
partition (lua/apply_outbox.lua), then acknowledges and deletes it. Entries a relay read
but never acknowledged are read again by it every CLAIM_EVERY_S (a lost reply), and
claimed by another after CLAIM_IDLE_MS (it died).

At-least-once delivery plus an idempotent apply is exactly-once effect. With one
partition there is no outbox and the relay does nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import ResponseError

from .._core.namespace import Namespace
from .._core.scripts import leg_of_entry
from ..errors import LayoutError, RedisUnavailableError, StackShiftError

log = logging.getLogger("stackshift.worker")
GROUP = "relay"
BATCH = 100
CLAIM_IDLE_MS = 30_000
CLAIM_EVERY_S = 5.0


class Relay:
    """One worker's relay of every partition's outbox (consumer `consumer`)."""

    def __init__(self, ns: Namespace, consumer: str) -> None:
        self.ns = ns
        self.consumer = consumer
        self.applied = 0  # entries this relay applied (tests count effects with it)
        self._groups = False
        self._claim_at = 0.0

    async def _create_groups(self) -> None:
        for keys in self.ns.part_keys:
            await self._create_group(keys.outbox())
        self._groups = True

    async def _create_group(self, outbox: str) -> None:
        try:
            await self.ns.redis.xgroup_create(outbox, GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def tick(self) -> int:
        """Apply what the outboxes hold now (new entries, and stale ones of dead relays);
        returns how many entries were applied."""
        ns = self.ns
        if ns.partitions == 1:
            return 0
        if not self._groups:
            await self._create_groups()
        found: list[tuple[int, bytes, dict[bytes, bytes]]] = []
        claim = time.monotonic() >= self._claim_at
        for p, keys in enumerate(ns.part_keys):
            entries = await self._read(keys.outbox(), claim)
            found += [(p, entry_id, fields) for entry_id, fields in entries]
        if claim:
            self._claim_at = time.monotonic() + CLAIM_EVERY_S
        done = 0
        for p, entry_id, fields in found:
            done += await self._apply(p, entry_id, fields)
        return done

    async def _read(self, outbox: str, claim: bool) -> list[tuple[bytes, dict[bytes, bytes]]]:
        try:
            return await self._read_group(outbox, claim)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost the outbox (FLUSHALL, a restart without persistence; the worker's
            # recovery logs it once): its group again, and the next tick reads it
            await self._create_group(outbox)
            return []

    async def _read_group(self, outbox: str, claim: bool) -> list[tuple[bytes, dict[bytes, bytes]]]:
        r = self.ns.redis
        out: list[tuple[bytes, dict[bytes, bytes]]] = []
        if claim:  # this relay's own unacknowledged entries (a reply lost), then others'
            mine: Any = await r.xreadgroup(GROUP, self.consumer, {outbox: "0"}, count=BATCH)
            for _, entries in mine or []:
                out += [(e, f) for e, f in entries if f]
            reply: Any = await r.xautoclaim(
                outbox, GROUP, self.consumer, CLAIM_IDLE_MS, start_id="0-0", count=BATCH
            )
            seen = {e for e, _ in out}
            out += [(e, f) for e, f in reply[1] if f and e not in seen]  # (deleted: empty)
        reply = await r.xreadgroup(GROUP, self.consumer, {outbox: ">"}, count=BATCH)
        for _, entries in reply or []:
            out += [(e, f) for e, f in entries if f]
        return out

    async def _apply(self, part: int, entry_id: bytes, fields: dict[bytes, bytes]) -> int:
        ns = self.ns
        action = fields.get(b"a", b"").decode()
        run_id = fields.get(b"run", b"").decode()
        rest = [x for k, v in fields.items() if k not in (b"a", b"run") for x in (k, v)]
        try:
            if action == "event":  # names a partition, not a run: send_event's leg there
                changed = await self._send_leg(fields)
            else:
                changed = await ns.scripts_of(run_id).apply_outbox(
                    action, run_id, rest, ns.settings.retention_ms
                )
        except (RedisUnavailableError, LayoutError):
            raise  # not the entry's fault: it stays pending, read again after CLAIM_EVERY_S
        except (StackShiftError, KeyError, ValueError) as exc:  # damaged: again cannot help
            log.error(
                "outbox entry %s of partition %d (%s run %s) cannot be applied and is dropped: %s",
                entry_id.decode(),
                part,
                action,
                run_id,
                exc,
            )
            changed = False
        outbox = ns.part_keys[part].outbox()
        async with ns.redis.pipeline(transaction=False) as pipe:
            pipe.xack(outbox, GROUP, entry_id)
            pipe.xdel(outbox, entry_id)
            await pipe.execute()
        self.applied += 1
        return int(changed)

    async def _send_leg(self, fields: dict[bytes, bytes]) -> bool:
        """Apply an entry 'event' (a transactional step's event, lua/transact.lua): the leg
        of its partition, deduplicated there by the event id and call token (applied
        again, it has its effect once). True unless it was a duplicate."""
        to, request = leg_of_entry(fields)
        if not 0 <= to < self.ns.partitions:
            raise ValueError(f"no partition {to}")
        reply = await self.ns.part_scripts(to).send_event(request, leg=True)
        return not reply.duplicate
