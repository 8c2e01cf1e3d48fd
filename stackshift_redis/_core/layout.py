"""The storage layout of a namespace: which release wrote it, migrating an older one, and
carrying forward what processes of an older release write during a rolling deploy.

Runs live for days in Redis, so a release meets the data of the one before it. The meta
hash (`keys.meta()`, fields in lua/layout.lua) records the layout version; `LAYOUT` is
the one this code writes. Layout 1 is the release of commit 6707af1, which recorded none.

Before its first script call (and again every `RECHECK_S`), each process reads the
version (`Layout.ensure`, called by the Lua door's gate; State's plain commands pass the
gate too). That check is one script call per process per 30 s, nothing per run:
- the same: go on;
- newer, or a migration to a newer one under way: refuse to write (`LayoutError`, one
  line; the check itself writes nothing): a rollback must not corrupt data;
- none, and none of layout 1's marker keys (`keys.layout1_markers`): a new namespace,
  given `LAYOUT` at once (no step runs: a step may cost a SCAN);
- older: migrate. One process takes the lock (`keys.migrating()`, a token with a TTL it
  renews, `next` set in the meta hash) and runs the steps of `migrations.MIGRATIONS` that
  lead past the namespace's layout, in bounded batches, storing each step's cursor after
  each batch: a process killed or stopped halfway leaves the rest to the next one, which
  resumes at the cursors. The others wait (one log line) and write nothing until the
  layout is current. A process that lost the lock (stalled past its TTL) waits again.
  Before converting, the migrating process waits until processes of an older layout-aware
  release (2 and on, `seen:<layout>` in the meta hash) have re-checked and stopped.
Release 6707af1 never checks: its workers and clients keep writing layout 1 after a
migration. New workers therefore run the steps again (`Layout.sweep`, one worker at a
time, under the same lock) every `SWEEP_EVERY_S` while a live worker has an older layout
(workers publish theirs in `keys.worker_info()`; 6707af1's publish none) and for
`SWEEP_AFTER_S` after a migration; with no step to run again, never.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..errors import InvalidArgumentError, LayoutError
from .keys import Keys, layout1_markers
from .migrations import split, steps_after
from .scripts import Scripts

log = logging.getLogger("stackshift.layout")

LAYOUT = 4  # the layout this code writes (1: commit 6707af1, which recorded none; 2: the
# same data, its version recorded; 3: key names of names with ':' escaped, issue 23;
# 4: no time index for queued and running runs, issue 22)
PARTITIONED = 5  # the least layout of a namespace made with partitions > 1: layout 4's data
# spread over several tags, which a release before partitions (layout 4 and older) must
# refuse to write to. No step leads there (a namespace never changes its partition count);
# the next change of stored data is layout 6, for namespaces with and without partitions.
LOCK_MS = 30_000  # the migration lock's TTL, renewed by its holder every third of it
RECHECK_S = 30.0  # a live process reads the version again after this long (every release)
DRAIN_MARGIN_S = 5.0  # added to RECHECK_S when waiting for older processes to notice
BATCH = 500  # items a step converts per call
WAIT_S = 0.5  # how often a waiting process looks again
SWEEP_EVERY_S = 300.0  # at most one sweep per namespace this often
SWEEP_AFTER_S = 3600.0  # sweeps go on this long after a migration (old clients are unseen)
SWEEP_PAUSE_S = 0.01  # between two batches of a sweep (it shares Redis with the work)

_Refusal = TypeVar("_Refusal", LayoutError, InvalidArgumentError)
_MIGRATING: contextvars.ContextVar[bool] = contextvars.ContextVar("migrating", default=False)


class _Namespace(Protocol):
    """What the layout check uses of a Namespace (namespace.py builds one per namespace)."""

    namespace: str
    keys: Keys
    partitions: int

    @property
    def scripts(self) -> Scripts: ...


@dataclass(frozen=True)
class Found:
    """What a check read (lua/layout.lua, op check); times are server ms."""

    layout: int  # 0: none recorded
    next: int  # the layout a migration under way leads to, 0: none
    old_data: bool  # no layout recorded, and keys of layout 1 exist
    oldest_worker: int  # the oldest layout among live workers (0: none, or not asked)
    migrated_at: int
    migrated_from: int  # 0: never, or a new namespace
    swept_at: int
    now: int
    partitions: int = 0  # the recorded partition count when it is not this process's

    @classmethod
    def of(cls, reply: Sequence[Any]) -> Found:
        """From the script's reply."""
        v = [int(x) for x in reply]
        return cls(v[0], v[1], bool(v[2]), v[3], v[4], v[5], v[6], v[7], *v[8:9])


# layout 1's markers that workers of a partitioned namespace also write on its tag, on their
# own (heartbeat, job map): after Redis lost the namespace (FLUSHALL, a restart without
# persistence) they come back before any layout check, so they cannot tell layout 1 there
WORKER_WRITTEN = ("jobs", "workers")


def old_layout_markers(ns: _Namespace) -> list[str]:
    """Keys that a namespace of layout 1 with any data has (keys.py: frozen names); with
    partitions, not those its workers rewrite on their own (WORKER_WRITTEN)."""
    markers = layout1_markers(ns.keys)
    if ns.partitions == 1:
        return markers
    return [m for m in markers if m[len(ns.keys.prefix) :] not in WORKER_WRITTEN]


def layout_for(partitions: int) -> int:
    """The layout a process with `partitions` partitions writes and checks for."""
    return LAYOUT if partitions == 1 else max(LAYOUT, PARTITIONED)


class Layout:
    """The layout check of one namespace in this process (see the module docstring)."""

    def __init__(self, ns: _Namespace) -> None:
        self._ns = ns
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._refused: LayoutError | InvalidArgumentError | None = None
        self._sweep_hint = False
        self.found: Found | None = None  # the last check's reading
        self.worker = False  # a worker's checks also read the oldest live worker's layout

    @property
    def mine(self) -> int:
        """The layout this process writes (layout_for its partition count)."""
        return layout_for(self._ns.partitions)

    async def gate(self) -> float:
        """The door's gate: ensure the layout; the monotonic time of the next check."""
        if _MIGRATING.get():
            return 0.0  # this task is the migration: its own calls pass
        await self.ensure()
        return time.monotonic() + RECHECK_S

    async def ensure(self, fresh: bool = False) -> None:
        """Make sure the namespace has this code's layout (migrating or waiting as needed);
        LayoutError when a newer release wrote it or is migrating it. `fresh`: check now
        even if the last check is recent (a worker starting)."""
        async with self._lock:
            now = time.monotonic()
            recent = self._checked_at is not None and now - self._checked_at < RECHECK_S
            if recent and not fresh:
                if self._refused is not None:
                    raise self._refused
                return
            found = await self._check()
            if found.layout < self.mine:
                await self._migrate(found)
                await self._check()  # what a sweep decides on
            self._checked_at = time.monotonic()

    def _refuse(self, layout: int, migrating: bool) -> LayoutError:
        ns = self._ns.namespace
        what = (
            f"is being migrated to storage layout {layout} by"
            if migrating
            else f"has storage layout {layout}, written by"
        )
        return self._remember(
            LayoutError(
                f"namespace {ns!r} {what} a newer stackshift-redis than this one (layout "
                f"{self.mine}): this process does not write to it; run the newer release (see "
                "the Deploying guide, 'Upgrades and rollbacks')"
            )
        )

    def _remember(self, exc: _Refusal) -> _Refusal:
        """Keep a refusal: every gate until the next check raises it again."""
        self._refused, self._checked_at = exc, time.monotonic()
        return exc

    async def _check(self) -> Found:
        ns = self._ns
        reply = await ns.scripts.layout(
            "check",
            layout=self.mine,
            markers=old_layout_markers(ns),
            workers=self.worker,
            partitions=ns.partitions,
        )
        found = self.found = Found.of(reply)
        if found.partitions:
            raise self._remember(
                InvalidArgumentError(
                    f"namespace {ns.namespace!r} has {found.partitions} partition(s), not "
                    f"{ns.partitions}: every client and worker of a namespace must pass the "
                    "same partitions=; this process writes nothing to it"
                )
            )
        if max(found.layout, found.next) > self.mine:
            raise self._refuse(max(found.layout, found.next), found.next > found.layout)
        self._refused = None
        self._sweep_hint = True
        return found

    async def _migrate(self, found: Found) -> None:
        ns, start, told = self._ns, found.layout or 1, False
        old = found.layout > 0 or found.old_data
        while True:
            token = uuid.uuid4().hex
            reply = await ns.scripts.layout("lock", layout=self.mine, token=token, lock_ms=LOCK_MS)
            code = int(reply[0])
            if code == 3:  # a newer release came first
                recorded, nxt = int(reply[1]), int(reply[2])
                raise self._refuse(max(recorded, nxt), nxt > recorded)
            if code == 2:
                return  # another process finished it
            if code == 0:
                if not told:
                    log.warning(
                        "namespace %r: another process is migrating the storage layout "
                        "%d -> %d; waiting for it (its lock expires in %.0f s if it died)",
                        ns.namespace,
                        start,
                        self.mine,
                        max(0, int(reply[1])) / 1000,
                    )
                    told = True
                await asyncio.sleep(WAIT_S)
                continue
            if await self._holding(token, start, old, _pairs(reply[1]), int(reply[2])):
                return
            log.warning(
                "namespace %r: lost the migration lock (this process stalled for "
                "over %d s?); waiting for the process that took it over",
                ns.namespace,
                LOCK_MS // 1000,
            )
            told = True

    async def _holding(
        self, token: str, start: int, old: bool, meta: dict[str, str], now_ms: int
    ) -> bool:
        """Run the steps while holding the lock; False when the lock was lost."""
        migrating = _MIGRATING.set(True)
        renew = asyncio.create_task(self._renew(token))
        try:
            await self._drain(meta, now_ms)
            return await self._run_steps(token, start, old, meta)
        except BaseException:
            with contextlib.suppress(Exception):  # let the next process resume at once
                await self._op("unlock", token)
            raise
        finally:
            renew.cancel()
            _MIGRATING.reset(migrating)

    async def _drain(self, meta: dict[str, str], now_ms: int) -> None:
        """Wait until the processes of an older layout-aware release seen lately have
        re-checked (every RECHECK_S), met `next` and stopped writing."""
        seen = {
            int(f[5:]): int(v) for f, v in meta.items() if f.startswith("seen:") and f[5:].isdigit()
        }
        older = [at for layout, at in seen.items() if layout < self.mine]
        wait = (max(older, default=0) - now_ms) / 1000 + RECHECK_S + DRAIN_MARGIN_S
        if older and wait > 0:
            layouts = sorted(layout for layout in seen if layout < self.mine)
            log.warning(
                "namespace %r: processes of layout %s checked it %.0f s ago: waiting %.0f s "
                "until they have seen this migration and stopped writing",
                self._ns.namespace,
                layouts,
                (now_ms - max(older)) / 1000,
                wait,
            )
            await asyncio.sleep(wait)

    async def _run_steps(self, token: str, start: int, old: bool, meta: dict[str, str]) -> bool:
        ns, steps = self._ns, steps_after(start)
        say = log.warning if old else log.info  # a new namespace: nothing to tell
        say(
            "namespace %r: migrating the storage layout %d -> %d (%d steps)%s",
            ns.namespace,
            start,
            self.mine,
            len(steps),
            "" if old else ": a new namespace",
        )
        began = time.monotonic()
        for step in steps:
            cursor: str | None = meta.get(f"mig:{step.name}", "")
            if cursor == "done":
                continue
            if cursor:
                say(
                    "namespace %r: migration step %s resumes at cursor %r (a migration "
                    "stopped there)",
                    ns.namespace,
                    step.name,
                    cursor,
                )
            t0, batches, count, counted = time.monotonic(), 0, 0, False
            while cursor is not None:
                cursor, n = split(await step.convert(ns, cursor, BATCH))
                batches, count, counted = batches + 1, count + (n or 0), counted or n is not None
                saved = "done" if cursor is None else cursor
                if not await self._op("cursor", token, step=step.name, cursor=saved):
                    return False
            say(
                "namespace %r: migration step %s (%s): %s%d batches in %.1f s",
                ns.namespace,
                step.name,
                step.what,
                f"{count} converted, " if counted else "",
                batches,
                time.monotonic() - t0,
            )
        if not await self._op("finish", token, cursor=str(start if old else 0)):
            return False
        say(
            "namespace %r: storage layout %d -> %d migrated in %.1f s",
            ns.namespace,
            start,
            self.mine,
            time.monotonic() - began,
        )
        return True

    async def _op(self, op: str, token: str, *, step: str = "", cursor: str = "") -> bool:
        reply = await self._ns.scripts.layout(
            op, layout=self.mine, token=token, lock_ms=LOCK_MS, step=step, cursor=cursor
        )
        return bool(reply)

    async def _renew(self, token: str) -> None:
        while True:
            await asyncio.sleep(LOCK_MS / 3000)
            with contextlib.suppress(Exception):  # a blip: the next renewal or save tells
                await self._op("renew", token)

    # the rolling-deploy sweep (workers only)
    def _sweep_from(self) -> int | None:
        """The layout whose later steps a sweep runs again now, or None."""
        f = self.found
        if f is None or f.layout != self.mine or f.next:
            return None
        bases = [f.oldest_worker] if 0 < f.oldest_worker < self.mine else []
        if f.migrated_from and f.now - f.migrated_at < SWEEP_AFTER_S * 1000:
            bases.append(f.migrated_from)
        if not bases or f.now - f.swept_at < SWEEP_EVERY_S * 1000:
            return None
        return min(bases) if steps_after(min(bases)) else None

    def sweep_due(self) -> bool:
        """True when this worker should try a sweep: at most once per check."""
        hint, self._sweep_hint = self._sweep_hint, False
        return hint and self._sweep_from() is not None

    async def sweep(self, after: int | None = None) -> bool:
        """Run the steps again over the whole namespace (converting what processes of an
        older release wrote since), under the migration lock; False when another process
        sweeps, or swept lately. `after`: run the steps after that layout now, due or not
        (`stackshift layout sweep`; the layout must be current)."""
        base = self._sweep_from() if after is None else after
        if base is None:
            return False
        token, ns = uuid.uuid4().hex, self._ns
        every = round(SWEEP_EVERY_S * 1000) if after is None else 0
        got = await ns.scripts.layout(
            "sweep", layout=self.mine, token=token, lock_ms=LOCK_MS, extra=every
        )
        if not got:
            return False
        renew = asyncio.create_task(self._renew(token))
        began, batches, count = time.monotonic(), 0, 0
        try:
            for step in steps_after(base):
                cursor: str | None = ""
                while cursor is not None:
                    cursor, n = split(await step.convert(ns, cursor, BATCH))
                    batches, count = batches + 1, count + (n or 0)
                    if not await self._op("renew", token):
                        return False
                    await asyncio.sleep(SWEEP_PAUSE_S)
            await self._op("swept", token)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._op("unlock", token)
            raise
        finally:
            renew.cancel()
        say = log.warning if count else log.info
        say(
            "namespace %r: rolling-deploy sweep: the steps after layout %d ran again "
            "(%d batches, %d items converted) in %.1f s",
            ns.namespace,
            base,
            batches,
            count,
            time.monotonic() - began,
        )
        return True


def _pairs(flat: Sequence[bytes]) -> dict[str, str]:
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
