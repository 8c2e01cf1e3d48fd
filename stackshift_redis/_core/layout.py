"""The storage layout of a namespace: which version wrote it, and migrating an older one.

Runs live for days in Redis, so a release meets the data of the one before it. The meta
hash (`keys.meta()`) records the layout version; `LAYOUT` is the one this code writes.
Layout 1 is the release of commit 6707af1, which recorded none.

Before its first script call (and again every `RECHECK_S`), each process reads the
version (`Layout.ensure`, called by the Lua door's gate):
- the same: go on;
- newer: refuse to write (`LayoutError`, one clear line): a rollback must not corrupt data;
- none, on a namespace with no data of an older layout: a new namespace; record `LAYOUT`;
- older: migrate. One process takes the lock (`keys.migrating()`, a token with a TTL it
  renews) and runs every step of `MIGRATIONS` in order, in bounded batches, storing each
  step's cursor in the meta hash after each batch, so a process killed halfway leaves the
  rest to the next one. The others wait until the layout is current, and no process
  writes before that. Steps are idempotent: a batch run twice (a lock that expired while
  its holder was paused) converts nothing twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import LayoutError
from .keys import Keys
from .scripts import Scripts

log = logging.getLogger("stackshift.layout")

LAYOUT = 2  # the layout this code writes (1: commit 6707af1, which recorded none)
LOCK_MS = 30_000  # the migration lock's TTL, renewed by its holder every third of it
RECHECK_S = 30.0  # a live process reads the version again after this long
BATCH = 500  # items a step converts per call
WAIT_S = 0.5  # how often a waiting process looks again

Convert = Callable[[Any, str, int], Awaitable[str | None]]  # (Namespace, cursor, limit)


class _Namespace(Protocol):
    """What the layout check uses of a Namespace (namespace.py builds one per namespace)."""

    namespace: str
    keys: Keys

    @property
    def scripts(self) -> Scripts: ...


@dataclass(frozen=True)
class Migration:
    """One step from the previous release's layout: `convert(ns, cursor, limit)` converts
    up to `limit` items after `cursor` ("" at first) and returns the next cursor, or None
    when nothing is left. It must be idempotent and bounded per Redis call."""

    name: str
    what: str  # for the log line: what it converts
    convert: Convert


MIGRATIONS: list[Migration] = []  # from layout 1 to LAYOUT, in order (migrations.py)

_MIGRATING: contextvars.ContextVar[bool] = contextvars.ContextVar("migrating", default=False)


def old_layout_markers(ns: _Namespace) -> list[str]:
    """Keys that a namespace of layout 1 with any data has (a run, a worker, a schedule)."""
    k = ns.keys
    statuses = ("queued", "scheduled", "running", "waiting", "completed", "failed", "cancelled")
    idx = [k.render("idx_status", s) for s in statuses]
    return [*idx, k.jobs(), k.workers(), k.schedules(), k.seq()]


class Layout:
    """The layout check of one namespace in this process (see the module docstring)."""

    def __init__(self, ns: _Namespace) -> None:
        self._ns = ns
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._refused: LayoutError | None = None

    async def gate(self) -> float:
        """The door's gate: ensure the layout; the monotonic time of the next check."""
        if _MIGRATING.get():
            return 0.0  # this task is the migration: its own calls pass
        await self.ensure()
        return time.monotonic() + RECHECK_S

    async def ensure(self) -> None:
        """Make sure the namespace has this code's layout (migrating or waiting as needed);
        LayoutError when a newer release wrote it."""
        async with self._lock:
            now = time.monotonic()
            if self._checked_at is not None and now - self._checked_at < RECHECK_S:
                if self._refused is not None:
                    raise self._refused
                return
            found = await self._read()
            if found < LAYOUT:
                await self._migrate(found)
            self._checked_at = time.monotonic()

    async def _read(self) -> int:
        ns = self._ns
        reply = await ns.scripts.layout("check", layout=LAYOUT, markers=old_layout_markers(ns))
        found = int(reply[0]) or 1
        if found > LAYOUT:
            self._refused = LayoutError(
                f"namespace {ns.namespace!r} has storage layout {found}, written by a newer "
                f"stackshift-redis than this one (layout {LAYOUT}): this process does not "
                "write to it; upgrade it (see the Deploying guide, 'Upgrades and rollbacks')"
            )
            self._checked_at = time.monotonic()
            raise self._refused
        self._refused = None
        return found

    async def _migrate(self, found: int) -> None:
        ns, token, told = self._ns, uuid.uuid4().hex, False
        while True:
            reply = await ns.scripts.layout("lock", layout=LAYOUT, token=token, lock_ms=LOCK_MS)
            if int(reply[0]) == 2:
                return  # another process finished it
            if int(reply[0]) == 1:
                meta = _pairs(reply[1])
                break
            if not told:
                log.warning(
                    "namespace %r: another process is migrating the storage layout %d -> %d; "
                    "waiting for it (its lock expires in %.0f s if it died)",
                    ns.namespace,
                    found,
                    LAYOUT,
                    max(0, int(reply[1])) / 1000,
                )
                told = True
            await asyncio.sleep(WAIT_S)
        token_var = _MIGRATING.set(True)
        renew = asyncio.create_task(self._renew(token))
        try:
            await self._run_steps(found, token, meta)
        finally:
            renew.cancel()
            _MIGRATING.reset(token_var)

    async def _run_steps(self, found: int, token: str, meta: dict[str, str]) -> None:
        ns = self._ns
        log.warning(
            "namespace %r: migrating the storage layout %d -> %d (%d steps)",
            ns.namespace,
            found,
            LAYOUT,
            len(MIGRATIONS),
        )
        started = time.monotonic()
        for step in MIGRATIONS:
            cursor: str | None = meta.get(f"mig:{step.name}", "")
            if cursor == "done":
                continue
            t0, batches = time.monotonic(), 0
            while cursor is not None:
                cursor = await step.convert(ns, cursor, BATCH)
                batches += 1
                if not await self._save(token, step.name, "done" if cursor is None else cursor):
                    raise LayoutError(
                        f"namespace {ns.namespace!r}: lost the migration lock during step "
                        f"{step.name!r} (this process was paused?); another process goes on"
                    )
            log.warning(
                "namespace %r: migration step %s (%s): %d batches in %.1f s",
                ns.namespace,
                step.name,
                step.what,
                batches,
                time.monotonic() - t0,
            )
        done = await ns.scripts.layout("finish", layout=LAYOUT, token=token, lock_ms=LOCK_MS)
        if not done:
            raise LayoutError(f"namespace {ns.namespace!r}: lost the migration lock at the end")
        log.warning(
            "namespace %r: storage layout %d -> %d migrated in %.1f s",
            ns.namespace,
            found,
            LAYOUT,
            time.monotonic() - started,
        )

    async def _save(self, token: str, step: str, cursor: str) -> bool:
        return bool(
            await self._ns.scripts.layout(
                "cursor", layout=LAYOUT, token=token, lock_ms=LOCK_MS, step=step, cursor=cursor
            )
        )

    async def _renew(self, token: str) -> None:
        while True:
            await asyncio.sleep(LOCK_MS / 3000)
            await self._ns.scripts.layout("renew", layout=LAYOUT, token=token, lock_ms=LOCK_MS)


def _pairs(flat: Sequence[bytes]) -> dict[str, str]:
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
