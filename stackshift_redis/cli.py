"""The `stackshift-worker` command: run a worker for an app given as `module:attribute`."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
from typing import Any

import click

from ._core.keys import check_name
from ._worker.supervisor import Supervisor
from .app import StackShift
from .errors import StackShiftError
from .logs import configure
from .metrics import register

log = logging.getLogger("stackshift.worker")
_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RECEIVED: list[signal.Signals] = []  # stop signals noted before the worker's loop took over


def _note(signum: int, frame: object) -> None:
    RECEIVED.append(signal.Signals(signum))


def note_signals() -> None:
    """Note SIGTERM and SIGINT instead of dying of them (Python's default), until the
    worker's event loop handles them: a worker stopped while it starts, or while it exits,
    still exits 0 (`_stackshift_redis_worker` installs this before any import)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _note)


def one_line(exc: click.UsageError) -> click.UsageError:
    """A usage error that prints as one line, `Error: <what> (see '<command> --help')`,
    instead of click's usage lines; its exit code stays 2."""
    if exc.ctx is None or isinstance(exc, _HELP):  # a group called alone prints its help
        return exc
    return click.UsageError(f"{exc.format_message()} (see '{exc.ctx.command_path} --help')")


class OneLineCommand(click.Command):
    """A click command whose usage errors are one line (see `one_line`)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line(exc) from None


class OneLineGroup(click.Group):
    """A click group whose usage errors, and those of its commands and subgroups, are one
    line (see `one_line`)."""

    group_class = type  # subgroups are OneLineGroups too

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise one_line(exc) from None


def load_app(target: str) -> StackShift:
    """Import `module:attribute` (the current directory is importable) and check its type."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise click.BadParameter("expected module:attribute, e.g. myapp.jobs:stackshift")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # the target itself; errors inside it keep a traceback
        if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
            raise
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attr):
        raise click.BadParameter(f"module {module_name!r} has no attribute {attr!r}")
    app = getattr(module, attr)
    if not isinstance(app, StackShift):
        raise click.BadParameter(f"{target} is not a StackShift app")
    return app


async def _serve(
    app: StackShift, queues: list[str], concurrency: int, burst: bool, grace: float
) -> None:
    worker = app.worker(queues=queues or None, concurrency=concurrency, grace=grace)
    loop = asyncio.get_running_loop()
    signals = {"count": len(RECEIVED) - 1 if RECEIVED else 0}

    def on_signal(sig: signal.Signals) -> None:  # a flag only; a second signal forces
        signals["count"] += 1
        force = signals["count"] > 1
        running = " ".join(sorted(worker.running)) or "none"
        log.info(
            "%s: %s (running: %s)",
            sig.name,
            "stopping now" if force else "finishing running attempts",
            running,
        )
        worker.request_stop(force=force)

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    if RECEIVED:  # a stop signal arrived while the worker started
        on_signal(RECEIVED[-1])
    try:
        await worker.run(burst=burst)
    finally:
        await app.close()
    if worker.threads_busy:  # threads cannot be cancelled: do not wait for them to return
        log.warning(
            "%d plain-function handlers still running: exiting without them "
            "(their runs are recovered when their leases expire)",
            worker.threads_busy,
        )
        logging.shutdown()
        os._exit(0)


def serve_metrics(app: StackShift, port: int) -> None:
    """Register the app's metrics in the default registry and serve it on `port`."""
    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise click.ClickException(
            "--metrics-port needs prometheus-client: pip install 'stackshift-redis[metrics]'"
        ) from None
    register(app)
    try:
        start_http_server(port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on port {port}: {exc}") from None
    log.info("metrics: http://0.0.0.0:%d/metrics", port)


@click.command(cls=OneLineCommand)
@click.argument("app_path", metavar="MODULE:APP")
@click.option("--queue", "-q", "queues", multiple=True, help="Queue to consume (repeatable).")
@click.option("--concurrency", "-c", default=10, show_default=True, type=click.IntRange(1))
@click.option("--redis-url", default=None, help="Overrides the app's Redis URL.")
@click.option("--burst", is_flag=True, help="Exit 0 once nothing is queued, running or due.")
@click.option("--grace", default=30.0, show_default=True, help="Seconds to finish on SIGTERM.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="json: one JSON object per line (run lines carry run_id, job, attempt, queue).",
)
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on this port (needs stackshift-redis[metrics]); with "
    "--processes N, worker process i serves on this port + i.",
)
@click.option(
    "--processes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes: more than 1 runs a supervisor that starts them, restarts one "
    "that dies and forwards SIGTERM/SIGINT.",
)
def main(
    app_path: str,
    queues: tuple[str, ...],
    concurrency: int,
    redis_url: str | None,
    burst: bool,
    grace: float,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    processes: int,
) -> None:
    """Run a stackshift worker for the app MODULE:APP (e.g. myapp.jobs:stackshift)."""
    note_signals()
    configure(log_level, log_format)
    app = load_app(app_path)
    if redis_url:  # checked here, before any worker process starts
        try:
            app.use_redis_url(redis_url)
        except StackShiftError as exc:  # a malformed URL: one line, exit 2
            raise click.BadParameter(str(exc), param_hint="--redis-url") from None
    for queue in queues:  # so is every queue name
        try:
            check_name("queue", queue)
        except StackShiftError as exc:
            raise click.BadParameter(str(exc), param_hint="--queue") from None
    if processes > 1 and RECEIVED:
        log.info("%s before the workers started: exiting", RECEIVED[-1].name)
        return
    if processes > 1:
        args = [app_path, *(a for q in queues for a in ("--queue", q))]
        args += ["--concurrency", str(concurrency), "--grace", str(grace)]
        args += ["--log-level", log_level, "--log-format", log_format]
        args += ["--redis-url", redis_url] if redis_url else []
        args += ["--burst"] if burst else []

        def argv(slot: int) -> list[str]:
            port = [] if metrics_port is None else ["--metrics-port", str(metrics_port + slot)]
            return [*args, *port]

        sys.exit(Supervisor(processes, argv, burst).run())
    if metrics_port is not None:
        serve_metrics(app, metrics_port)
    if RECEIVED:
        log.info("%s before the worker started: exiting (nothing was claimed)", RECEIVED[-1].name)
        return
    try:
        asyncio.run(_serve(app, list(queues), concurrency, burst, grace))
    except StackShiftError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        note_signals()  # closing the loop gave SIGTERM back to Python's default


if __name__ == "__main__":
    main()
