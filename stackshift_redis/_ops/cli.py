"""The `stackshift` command: inspect and control a namespace without application code.

`--redis-url` and `--namespace` (or STACKSHIFT_REDIS_URL, STACKSHIFT_NAMESPACE) are all it
needs. Reads go through `inspection.Inspector`; tables are drawn by `ops_render`. Exit
codes (target.py): 0 ok, 1 not found or refused, 2 usage error, 3 Redis unreachable or
refusing. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .._client.inspector import Inspector, jsonable
from .._client.views import RunView
from .._core.keys import STATUSES
from ..app import StackShift
from ..cli import OneLineGroup
from ..errors import RunNotFoundError
from . import actions, render
from .admin import dashboard, schedules
from .jobs_cmd import jobs
from .layout_cmd import layout
from .tail import runs_tail
from .target import (
    DEFAULT_URL,
    Target,
    emit_json,
    empty_hint,
    json_option,
    parse_when,
    target_of,
)


@click.group(cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis-url",
    envvar="STACKSHIFT_REDIS_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Redis to inspect (env STACKSHIFT_REDIS_URL).",
)
@click.option(
    "--namespace",
    "-n",
    envvar="STACKSHIFT_NAMESPACE",
    default="default",
    show_default=True,
    help="Namespace of the service (env STACKSHIFT_NAMESPACE).",
)
@click.option(
    "--cluster",
    is_flag=True,
    envvar="STACKSHIFT_REDIS_CLUSTER",
    help="The URL is a node of a Redis Cluster (env STACKSHIFT_REDIS_CLUSTER=1).",
)
@click.option(
    "--partitions",
    envvar="STACKSHIFT_PARTITIONS",
    type=click.IntRange(1, 256),
    default=None,
    help="The namespace's partition count (env STACKSHIFT_PARTITIONS); by default the one "
    "it recorded (1 when none is). Give it for a namespace nothing has written yet.",
)
@click.pass_context
def main(
    ctx: click.Context, redis_url: str, namespace: str, cluster: bool, partitions: int | None
) -> None:
    """Inspect and control stackshift runs, queues, workers, events and schedules."""
    ctx.obj = Target(redis_url, namespace, cluster, partitions)


# runs
@main.group()
def runs() -> None:
    """List, show, tail, cancel, retry and replay runs."""


runs.add_command(runs_tail)
runs.add_command(actions.runs_cancel)
runs.add_command(actions.runs_retry)


@runs.command("list")
@click.option("--status", "-s", multiple=True, type=click.Choice(STATUSES), help="Repeatable.")
@click.option("--job", "-j", default=None)
@click.option("--limit", "-l", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", default=None, help="The cursor printed under the previous page.")
@click.option(
    "--created-after", "--after", "after", default=None, help="ISO date/time (UTC), inclusive."
)
@click.option("--created-before", "--before", "before", default=None, help="ISO date/time (UTC).")
@json_option
@click.pass_context
def runs_list(
    ctx: click.Context,
    status: tuple[str, ...],
    job: str | None,
    limit: int,
    cursor: str | None,
    after: str | None,
    before: str | None,
    as_json: bool,
) -> None:
    """Runs, newest first, one page at a time."""
    target = target_of(ctx)
    page = target.run(
        lambda app: Inspector(app._core).runs(
            status=list(status) or None,
            job=job,
            limit=limit,
            cursor=cursor,
            created_after=parse_when(after, "--after"),
            created_before=parse_when(before, "--before"),
        )
    )
    if as_json:
        emit_json({"runs": list(page), "cursor": page.cursor})
        return
    if not page and cursor is None:
        click.echo(
            f"no runs match; {empty_hint(target)}"
            if not (status or job)
            else "no runs match these filters"
        )
        return
    render.runs_table(page)
    if page.cursor:
        click.echo(f"next page: --cursor {page.cursor}")


async def _show(app: StackShift, run_id: str) -> RunView:
    view = await Inspector(app._core).view(run_id)
    if view is None:
        raise RunNotFoundError(
            f"no run {run_id} in namespace {app.namespace!r} (unknown or expired)"
        )
    return view


@runs.command("show")
@click.argument("run_id")
@json_option
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """A run: status, links, payload, result or error, steps (result, duration), waits."""
    view = target_of(ctx).run(lambda app: _show(app, run_id))
    if as_json:
        emit_json({**jsonable(view.info), "children": view.children, "waits": view.waits})
        return
    render.run_detail(view)


@runs.command("find")
@click.argument("job")
@click.argument("idempotency_key")
@json_option
@click.pass_context
def runs_find(ctx: click.Context, job: str, idempotency_key: str, as_json: bool) -> None:
    """The run an idempotency key of JOB points to."""

    async def work(app: StackShift) -> Any:
        info = await Inspector(app._core).find(job, idempotency_key)
        if info is None:
            raise RunNotFoundError(f"no run of {job!r} for idempotency key {idempotency_key!r}")
        return await _show(app, info.id)

    view = target_of(ctx).run(work)
    if as_json:
        emit_json({**jsonable(view.info), "children": view.children, "waits": view.waits})
        return
    render.run_detail(view)


@runs.command("replay")
@click.argument("run_id")
@click.option("--from-step", default=None, help="Re-run this step and the later ones.")
@click.pass_context
def runs_replay(ctx: click.Context, run_id: str, from_step: str | None) -> None:
    """Start a new run of the same job and payload (from a step: earlier results copied)."""

    async def act(app: StackShift, rid: str) -> str:
        handle = await app.replay(rid, from_step=from_step)
        return f"replayed as {handle.id}"

    actions._each(ctx, (run_id,), act)


# events
@main.group()
def events() -> None:
    """Send events; list recent events and what waits for them."""


@events.command("send")
@click.argument("name")
@click.option("--data", default=None, help="The event's data as JSON.")
@click.option("--id", "event_id", default=None, help="Event id (dedupe).")
@json_option
@click.pass_context
def events_send(
    ctx: click.Context, name: str, data: str | None, event_id: str | None, as_json: bool
) -> None:
    """Send an event: resume runs waiting for it and start its on_event jobs."""
    try:
        value = json.loads(data) if data is not None else None
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    result = target_of(ctx).run(lambda app: app.send_event(name, value, id=event_id))
    if as_json:
        emit_json(result)
        return
    if result.duplicate:
        click.echo(f"event {result.id}: already sent (duplicate id): nothing resumed or started")
        return
    cancelled = list(getattr(result, "cancelled", []))
    click.echo(
        f"event {result.id}: resumed {len(result.resumed)} run(s), started "
        f"{len(result.started)}, cancelled {len(cancelled)}"
    )
    for verb, ids in (("resumed", result.resumed), ("started", result.started)):
        for rid in ids:
            click.echo(f"  {verb} {rid}")
    for rid in cancelled:
        click.echo(f"  cancelled {rid}")


@events.command("list")
@json_option
@click.pass_context
def events_list(ctx: click.Context, as_json: bool) -> None:
    """Recent events and the runs waiting for events."""

    async def work(app: StackShift) -> Any:
        insp = Inspector(app._core)
        return await insp.recent_events(), await insp.waiters()

    recent, waiting = target_of(ctx).run(work)
    if as_json:
        emit_json({"events": recent, "waiting": waiting})
        return
    render.events_tables(recent, waiting)


# queues and workers
@main.command()
@json_option
@click.pass_context
def workers(ctx: click.Context, as_json: bool) -> None:
    """Workers: id, host, pid, queues, running, last heartbeat."""
    target = target_of(ctx)
    found = target.run(lambda app: Inspector(app._core).workers())
    if as_json:
        emit_json(found)
    elif not found:
        click.echo(f"no workers seen in the last hour: {empty_hint(target)}")
    else:
        render.workers_table(found)


main.add_command(actions.queues)
main.add_command(jobs)
main.add_command(schedules)
main.add_command(dashboard)
main.add_command(layout)

if __name__ == "__main__":
    main()
