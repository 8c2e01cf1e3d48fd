"""Actions of the `stackshift` command: `runs cancel|retry` by id or, in bulk, by filter
(`--job`, `--status`, `--created-before/after`, `--dry-run`, `--yes`), and the `queues`
group (the table, `queues pause NAME`, `queues resume NAME`).

A bulk action counts the matching runs first (one ZLEXCOUNT per status), prints the count,
asks for confirmation unless `--yes`, then changes the runs in bounded batches
(`Control`: one `bulk` script per batch of at most 200 runs and 2 ms of Redis time),
printing its progress on stderr; the number changed goes to stdout."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from .._client.control import CANCELLABLE, RETRIABLE
from .._client.inspector import Inspector
from ..app import StackShift
from ..errors import InvalidArgumentError, RunNotFoundError, StackShiftError
from . import render
from .target import Refused, emit_json, empty_hint, json_option, parse_when, target_of

Act = Callable[[StackShift, str], Awaitable[str]]


def _each(ctx: click.Context, ids: tuple[str, ...], act: Act) -> None:
    """Act on each run id; a run that is unknown or refused is one line on stderr (exit 1)."""

    async def work(app: StackShift) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for run_id in ids:
            try:
                out.append((run_id, await act(app, run_id)))
            except (RunNotFoundError, StackShiftError) as exc:
                if isinstance(exc, InvalidArgumentError):
                    raise
                out.append((run_id, None))
                click.echo(f"{run_id}: {exc}", err=True)
        return out

    results = target_of(ctx).run(work)
    for run_id, message in results:
        if message is not None:
            click.echo(f"{run_id}: {message}")
    if any(m is None for _, m in results):
        ctx.exit(1)


def bulk_options(statuses: tuple[str, ...]) -> Callable[[Any], Any]:
    """The filter options of a bulk action."""

    def wrap(f: Any) -> Any:
        for opt in reversed(
            [
                click.option("--job", "-j", default=None, help="Act on this job's runs."),
                click.option(
                    "--status",
                    "-s",
                    multiple=True,
                    type=click.Choice(statuses),
                    help="Repeatable (default: "
                    + ("every unfinished one" if "running" in statuses else "failed")
                    + ").",
                ),
                click.option("--created-after", default=None, help="ISO date/time (UTC)."),
                click.option("--created-before", default=None, help="ISO date/time (UTC)."),
                click.option(
                    "--dry-run", is_flag=True, help="Print how many runs match; change none."
                ),
                click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
            ]
        ):
            f = opt(f)
        return f

    return wrap


def _bulk(ctx: click.Context, action: str, opts: dict[str, Any], reason: str = "") -> None:
    """Count, confirm, then act on the runs matching the filters, in batches."""
    target = target_of(ctx)
    job = opts["job"]
    if job is None:
        raise click.UsageError(f"runs {action}: give RUN_IDs, or --job to act on runs in bulk")
    filters = {
        "job": job,
        "status": list(opts["status"]) or None,
        "created_after": parse_when(opts["created_after"], "--created-after"),
        "created_before": parse_when(opts["created_before"], "--created-before"),
    }
    count = target.run(lambda app: app._control.count_runs(action, **filters))
    verb = "cancelled" if action == "cancel" else "retried"
    if opts["dry_run"]:
        click.echo(f"{count} run(s) would be {verb}")
        return
    if count == 0:
        click.echo(f"0 runs {verb}: none match")
        return
    if not opts["yes"] and not _confirmed(f"{action} {count} run(s) of job {job!r}?"):
        raise Refused("nothing changed (not confirmed; --yes skips the question)")

    tty = sys.stderr.isatty()

    def progress(done: int) -> None:  # one line per batch; a tty rewrites one line
        click.echo(f"{chr(13) if tty else ''}{verb} {done} of {count} ...", err=True, nl=not tty)

    async def work(app: StackShift) -> int:
        if action == "cancel":
            return await app._control.cancel_runs(reason=reason, progress=progress, **filters)
        return await app._control.retry_runs(progress=progress, **filters)

    done = target.run(work)
    if tty:
        click.echo("", err=True)
    click.echo(f"{done} run(s) {verb}")


@click.command("cancel")
@click.argument("run_ids", nargs=-1)
@click.option("--reason", default="cancelled by operator", show_default=True)
@bulk_options(CANCELLABLE)
@click.pass_context
def runs_cancel(ctx: click.Context, /, run_ids: tuple[str, ...], reason: str, **opts: Any) -> None:
    """Cancel runs by id, or in bulk by --job [--status] [--created-before/after]."""
    if not run_ids:
        _bulk(ctx, "cancel", opts, reason)
        return
    _no_filters("cancel", opts)

    async def act(app: StackShift, run_id: str) -> str:
        status = await app.run(run_id).status()
        if status is None:
            raise RunNotFoundError("no such run (unknown or expired)")
        if not await app.cancel(run_id, reason):
            raise StackShiftError(f"not cancelled: the run is already {status}")
        return (
            "cancel requested (running: stops at its next step)"
            if status == "running"
            else "cancelled"
        )

    _each(ctx, run_ids, act)


@click.command("retry")
@click.argument("run_ids", nargs=-1)
@bulk_options(RETRIABLE)
@click.pass_context
def runs_retry(ctx: click.Context, /, run_ids: tuple[str, ...], **opts: Any) -> None:
    """Queue failed runs again by id, or in bulk by --job [--status] [--created-...]."""
    if not run_ids:
        _bulk(ctx, "retry", opts)
        return
    _no_filters("retry", opts)

    async def act(app: StackShift, run_id: str) -> str:
        await app.retry(run_id)
        return "queued again"

    _each(ctx, run_ids, act)


def _no_filters(action: str, opts: dict[str, Any]) -> None:
    if opts["job"] or opts["status"] or opts["created_after"] or opts["created_before"]:
        raise click.UsageError(f"runs {action}: give RUN_IDs or filters (--job ...), not both")


# queues
@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Queues: ready, scheduled, running, waiting, paused, concurrency, done/failed.
    Also: queues pause NAME, queues resume NAME."""
    if ctx.invoked_subcommand is not None:
        return
    target = target_of(ctx)
    stats = target.run(lambda app: Inspector(app._core).queues())
    if as_json:
        emit_json(stats)
    elif not stats:
        click.echo(f"no queues known: {empty_hint(target)}; queues appear once a worker starts")
    else:
        render.queues_table(stats)


@queues.command("pause")
@click.argument("name")
@click.pass_context
def queues_pause(ctx: click.Context, name: str) -> None:
    """Pause a queue: workers claim none of its runs until it is resumed."""
    target = target_of(ctx)
    changed = target.run(lambda app: app.pause_queue(name))
    click.echo(f"queue {name}: paused" if changed else f"queue {name}: already paused")
    known = target.run(lambda app: Inspector(app._core).queue_names())
    if name not in known:  # a typo pauses nothing anyone uses: say so
        click.echo(
            f"warning: no worker or run knows queue {name!r} (known: {', '.join(known) or '-'})",
            err=True,
        )


@queues.command("resume")
@click.argument("name")
@click.pass_context
def queues_resume(ctx: click.Context, name: str) -> None:
    """Resume a paused queue (its runs are taken in order)."""
    changed = target_of(ctx).run(lambda app: app.resume_queue(name))
    click.echo(f"queue {name}: resumed" if changed else f"queue {name}: was not paused")


def _confirmed(question: str) -> bool:
    """The operator's answer; no answer (no terminal, end of input) is a no."""
    try:
        return click.confirm(question, err=True)
    except click.Abort:
        click.echo(err=True)
        return False
