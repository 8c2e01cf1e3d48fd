"""The `stackshift schedules` group and the `stackshift dashboard` command."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import click

from ..app import StackShift
from ..errors import StackShiftError
from . import render
from .target import Refused, emit_json, json_option, target_of


# schedules
def _schedules(app: StackShift) -> Any:
    api = getattr(app, "schedules", None)
    if api is None:
        raise StackShiftError("schedules are not available in this version of stackshift-redis")
    return api


@click.group()
def schedules() -> None:
    """List, pause, resume, trigger and delete schedules."""


@schedules.command("list")
@json_option
@click.pass_context
def schedules_list(ctx: click.Context, as_json: bool) -> None:
    """Every schedule with its next fire time."""

    async def work(app: StackShift) -> Any:
        return await _schedules(app).list()

    infos = target_of(ctx).run(work)
    if as_json:
        emit_json(infos)
    elif not infos:
        click.echo("no schedules")
    else:
        render.schedules_table(infos)


def _schedule_action(verb: str) -> Callable[..., None]:
    @click.argument("name")
    @click.pass_context
    def command(ctx: click.Context, name: str) -> None:
        async def work(app: StackShift) -> Any:
            return await getattr(_schedules(app), verb)(name)

        result = target_of(ctx).run(work)
        if result is False:
            raise Refused(f"no schedule {name!r}")
        extra = f": run {result.id}" if verb == "trigger" and hasattr(result, "id") else ""
        click.echo(f"schedule {name}: {verb}{'d' if verb.endswith('e') else 'ed'}{extra}")

    command.__doc__ = f"{verb.capitalize()} a schedule."
    return command


for _verb in ("pause", "resume", "trigger", "delete"):
    schedules.command(_verb)(_schedule_action(_verb))


# dashboard
@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--read-only", is_flag=True, help="Refuse every action (cancel, retry, bulk, pause...)."
)
@click.option(
    "--token",
    envvar="STACKSHIFT_DASHBOARD_TOKEN",
    default=None,
    help="Require this token: browsers sign in once, scripts send it as a Bearer token "
    "(env STACKSHIFT_DASHBOARD_TOKEN).",
)
@click.option(
    "--basic-auth",
    envvar="STACKSHIFT_DASHBOARD_AUTH",
    default=None,
    help="Require user:password (env STACKSHIFT_DASHBOARD_AUTH).",
)
@click.pass_context
def dashboard(
    ctx: click.Context,
    host: str,
    port: int,
    read_only: bool,
    token: str | None,
    basic_auth: str | None,
) -> None:
    """Serve the web dashboard (needs the extra: pip install 'stackshift-redis[dashboard]')."""
    try:
        module = importlib.import_module("stackshift_redis.dashboard")
        uvicorn = importlib.import_module("uvicorn")
    except ImportError as exc:
        raise Refused(
            f"the dashboard needs its extra ({exc.name} is missing): "
            "pip install 'stackshift-redis[dashboard]'"
        ) from None
    if basic_auth is not None and ":" not in basic_auth:
        raise click.BadParameter("expected user:password", param_hint="--basic-auth")
    app = target_of(ctx).app()
    asgi = module.create_app(app, read_only=read_only, token=token, basic_auth=basic_auth)
    click.echo(f"stackshift dashboard for namespace {app.namespace!r} on http://{host}:{port}/")
    uvicorn.run(asgi, host=host, port=port, log_level="warning")
