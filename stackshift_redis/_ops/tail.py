"""`stackshift runs tail RUN_ID`: follow a run's output and status until it finishes.

Messages come from `RunHandle.stream()` as they are published (one line each: time, topic,
attempt, data); the status is read once a second and printed when it changes. The exit
code is the run's outcome: 0 completed, 1 failed or cancelled (or gone: expired).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from .._client.inspector import jsonable
from .._client.streams import message_json
from .._core.output import StreamMessage
from ..app import StackShift
from ..errors import RunNotFoundError
from .target import json_option, target_of

STATUS_POLL_S = 1.0
QUIET = object()  # no message within STATUS_POLL_S: look at the status


def _line(msg: StreamMessage) -> str:
    data = msg.data if isinstance(msg.data, str) else json.dumps(jsonable(msg.data))
    return f"{msg.at:%H:%M:%S.%f}"[:-3] + f" {msg.topic} #{msg.attempt} {data}"


def _json_line(msg: StreamMessage) -> str:
    return json.dumps({"type": "message", **json.loads(message_json(msg))}, ensure_ascii=False)


def _status_line(status: str, as_json: bool) -> str:
    if as_json:
        return json.dumps({"type": "status", "status": status})
    return click.style(f"-- {status}", fg="green" if status == "completed" else "yellow")


async def _status(app: StackShift, run_id: str) -> str:
    try:
        return await app.run(run_id).status()
    except RunNotFoundError:
        return "expired"


async def follow(app: StackShift, run_id: str, topic: str | None, as_json: bool) -> str:
    """Print the run's messages and status changes until it finishes; its final status."""
    handle = app.run(run_id)
    messages = handle.stream(topic=topic)
    status = await _status(app, run_id)
    if status == "expired":
        raise RunNotFoundError(
            f"no run {run_id} in namespace {app.namespace!r} (unknown or expired)"
        )
    click.echo(_status_line(status, as_json))
    items: asyncio.Queue[StreamMessage | Exception | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for msg in messages:
                items.put_nowait(msg)
            items.put_nowait(None)  # the run is final and every message was read
        except Exception as exc:  # Redis gone for too long: raised by the loop below
            items.put_nowait(exc)

    reader = asyncio.create_task(read())
    loop = asyncio.get_running_loop()
    check_at = loop.time() + STATUS_POLL_S
    try:
        while True:
            try:
                timeout = max(0.0, check_at - loop.time())
                item: object = await asyncio.wait_for(items.get(), timeout)
            except TimeoutError:
                item = QUIET
            if isinstance(item, Exception):
                raise item
            if isinstance(item, StreamMessage):
                click.echo(_json_line(item) if as_json else _line(item))
            if item is None or loop.time() >= check_at:  # the status, once a second
                check_at = loop.time() + STATUS_POLL_S
                now = await _status(app, run_id)
                if now != status:
                    status = now
                    click.echo(_status_line(status, as_json))
            if item is None:
                return status
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


@click.command("tail")
@click.argument("run_id")
@click.option("--topic", "-t", default=None, help="Only this topic's messages.")
@json_option
@click.pass_context
def runs_tail(ctx: click.Context, run_id: str, topic: str | None, as_json: bool) -> None:
    """Follow a run's output and status until it finishes (exit 0: completed, 1: failed,
    cancelled or expired)."""
    final: Any = target_of(ctx).run(lambda app: follow(app, run_id, topic, as_json))
    if final != "completed":
        ctx.exit(1)
