"""The `stackshift layout` group: a namespace's storage layout (upgrades), and migrating it.

`show` reads the meta hash, the migration lock and the live workers' published layouts
with plain reads (no layout check: it works on a namespace of any layout). `migrate`
runs this release's migration now, with one log line per step on stderr (the steps need
no application code: `_core/migrations.py`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click

from .._core.migrations import steps_after
from ..app import StackShift
from .target import Refused, emit_json, json_option, target_of


async def read_status(app: StackShift) -> dict[str, Any]:
    """What `stackshift layout show` prints (times are epoch ms of the server clock)."""
    ns = app._core
    r, k = ns.redis, ns.keys
    meta = {f.decode(): v.decode() for f, v in (await r.hgetall(k.meta())).items()}
    lock_ms = int(await r.pttl(k.migrating()))
    secs, micros = await r.time()
    now = int(secs) * 1000 + int(micros) // 1000
    live = [w.decode() for w in await r.zrangebyscore(k.workers(), now, "+inf")]
    workers: dict[int, int] = {}
    for raw in await r.hmget(k.worker_info(), live) if live else []:
        if raw is not None:
            layout = int(json.loads(raw).get("layout", 1))
            workers[layout] = workers.get(layout, 0) + 1

    def num(field: str) -> int:
        return int(meta.get(field, 0))

    return {
        "namespace": ns.namespace,
        "layout": num("layout"),
        "this_code": ns.layout.mine,
        "next": num("next"),
        "lock_ms_left": max(lock_ms, 0),
        "steps": {f[4:]: v for f, v in meta.items() if f.startswith("mig:")},
        "migrated_at": num("migrated_at"),
        "migrated_from": num("migrated_from"),
        "swept_at": num("swept_at"),
        "now": now,
        "seen": {int(f[5:]): int(v) for f, v in meta.items() if f.startswith("seen:")},
        "live_workers": dict(sorted(workers.items())),
    }


def _when(ms: int, now: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{at} ({(now - ms) / 1000:.0f} s ago)"


def _render(s: dict[str, Any]) -> list[str]:
    layout, now = s["layout"], s["now"]
    lines = [
        f"namespace {s['namespace']!r}: storage layout "
        f"{layout or 'none recorded (new, or written by release 6707af1: layout 1)'}"
        f" (this stackshift-redis writes {s['this_code']})"
    ]
    if s["next"]:
        held = (
            f"lock held, {s['lock_ms_left'] / 1000:.0f} s left"
            if s["lock_ms_left"]
            else "no process holds the lock: start one of that layout to finish it"
        )
        lines.append(f"migration to layout {s['next']} under way ({held})")
        lines += [f"  step {name}: {cursor or 'not begun'}" for name, cursor in s["steps"].items()]
    if s["migrated_at"]:
        lines.append(
            f"last migration: from layout {s['migrated_from'] or 'none (new)'} at "
            f"{_when(s['migrated_at'], now)}"
        )
    if s["swept_at"]:
        lines.append(f"last rolling-deploy sweep: {_when(s['swept_at'], now)}")
    for seen, at in sorted(s["seen"].items()):
        lines.append(f"a process of layout {seen} checked it at {_when(at, now)}")
    counts = ", ".join(f"{n} of layout {lay}" for lay, n in s["live_workers"].items())
    lines.append(f"live workers: {counts or 'none'}")
    if layout > s["this_code"]:
        lines.append("this stackshift-redis is older than the namespace: it refuses to write")
    older = [lay for lay in s["live_workers"] if lay < (layout or 1)]
    if older:
        lines.append(
            f"workers of an older release are alive (layout {older}; 1: release "
            "6707af1, unaware of layouts): stop them to finish the deploy"
        )
    return lines


@click.group()
def layout() -> None:
    """The storage layout of the namespace: show it, or migrate an older one."""


@layout.command("show")
@json_option
@click.pass_context
def layout_show(ctx: click.Context, as_json: bool) -> None:
    """Layout, a migration under way, the last migration and sweep, live workers' layouts."""
    status = target_of(ctx).run(read_status)
    if as_json:
        emit_json(status)
    else:
        click.echo("\n".join(_render(status)))


class _Echo(logging.Handler):
    """The layout's log lines on stderr while a command runs (one line each)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    handler = _Echo()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("stackshift.layout")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@layout.command("migrate")
@click.pass_context
def layout_migrate(ctx: click.Context) -> None:
    """Migrate an older layout now, one line per step on stderr (waits while another
    process migrates; refuses a newer layout)."""

    async def work(app: StackShift) -> dict[str, Any]:
        await app._core.layout.ensure()
        return await read_status(app)

    with _log_to_stderr():
        status = target_of(ctx).run(work)
    click.echo(_render(status)[0])


@layout.command("sweep")
@click.option(
    "--after",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Run the steps that lead past this layout (1: release 6707af1).",
)
@click.pass_context
def layout_sweep(ctx: click.Context, after: int) -> None:
    """Run this release's migration steps again over the whole namespace, now: converts
    what processes of an older release wrote since the migration (run it once the last
    of them is gone). One line on stderr; nothing to do when this release has no steps."""

    async def work(app: StackShift) -> bool:
        await app._core.layout.ensure()
        if not steps_after(after):
            return True
        return await app._core.layout.sweep(after=after)

    with _log_to_stderr():
        swept = target_of(ctx).run(work)
    if not swept:
        raise Refused("another process is migrating or sweeping this namespace: try again")
    click.echo(f"swept: {len(steps_after(after))} steps after layout {after}")
