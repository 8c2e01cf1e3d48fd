"""`stackshift jobs [--json]`: jobs, live versions and their workers, unfinished runs per
version (see `_client/jobs_view.py`)."""

from __future__ import annotations

import click
from rich.table import Table

from .._client.jobs_view import JobReport, jobs_report
from .render import console
from .target import emit_json, empty_hint, json_option, target_of


@click.command()
@json_option
@click.pass_context
def jobs(ctx: click.Context, as_json: bool) -> None:
    """Jobs: queue, live versions and their workers, unfinished runs per version."""
    target = target_of(ctx)
    found = target.run(lambda app: jobs_report(app._core))
    if as_json:
        emit_json(found)
    elif not found:
        click.echo(f"no job definitions published: {empty_hint(target)}; workers publish them")
    else:
        jobs_table(found)


def jobs_table(reports: list[JobReport]) -> None:
    """`stackshift jobs`: one row per job and version."""
    t = Table(box=None, header_style="bold")
    for col in ("job", "queue", "version", "workers", "queued", "scheduled", "running", "waiting"):
        t.add_column(col, no_wrap=True)
    for rep in reports:
        versions = sorted(set(rep.versions) | set(rep.live) | set(rep.unfinished))
        for v in versions:
            per = rep.unfinished.get(v, {})
            held = rep.unserved.get(v, 0)
            workers = ", ".join(rep.live[v]) if v in rep.live else "none live"
            if v in rep.live and not rep.live[v]:
                workers = "live"
            queued = str(per.get("queued", 0)) + (f" ({held} unserved)" if held else "")
            t.add_row(
                rep.job,
                rep.queue,
                str(v),
                workers,
                queued,
                *(str(per.get(s, 0)) for s in ("scheduled", "running", "waiting")),
            )
    console.print(t)
    if any(r.capped for r in reports):
        console.print("(counts stop at 10,000 runs per job and status)", markup=False)
