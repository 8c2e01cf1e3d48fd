"""`GET /runs/{run_id}/stream`: a run's output as Server-Sent Events (text/event-stream).

Each message is one event whose `id:` is the message id and whose `data:` is JSON
`{id, topic, data, at, attempt}`; a browser's EventSource that loses the connection
reconnects with `Last-Event-ID` and resumes after it (`?after=<id>` does the same, and
`?topic=` keeps one topic). Once the run is final and every message was sent, an `end`
event carries `{"status": ...}` and the response ends. A comment line every 15 s keeps
proxies from closing a quiet stream. It reads through `RunHandle.stream()`, so all the
browsers following one run from this process share one blocking read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .._client.client import Client
from .._client.streams import message_json
from .._core.output import StreamMessage, check_message_id, check_topic
from ..errors import RunNotFoundError

KEEPALIVE_S = 15.0
RETRY_MS = 2000  # how long a browser waits before it reconnects


def sse(data: str, *, event: str | None = None, event_id: str | None = None) -> str:
    """One SSE event (a multi-line `data` becomes several `data:` lines)."""
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id else "")
    return head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


async def output_events(
    client: Client, run_id: str, topic: str | None, after: str | None
) -> AsyncIterator[str]:
    """The SSE text of a run's output, then the `end` event."""
    handle = client.run(run_id)
    messages = handle.stream(topic=topic, after=after)

    async def next_message() -> StreamMessage:
        return await anext(messages)

    yield f"retry: {RETRY_MS}\n\n"
    pending: asyncio.Task[StreamMessage] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(next_message())
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_S)
            if not done:
                yield ": keepalive\n\n"
                continue
            task, pending = pending, None
            try:
                msg = task.result()
            except StopAsyncIteration:
                break
            yield sse(message_json(msg), event_id=msg.id)
        try:
            status = await handle.status()
        except RunNotFoundError:
            status = "expired"
        yield sse(json.dumps({"status": status}), event="end")
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await messages.aclose()


def stream_endpoint(client: Client) -> Callable[[Request], Awaitable[Response]]:
    """The `/runs/{run_id}/stream` handler (404 for an unknown run, 400 for a bad id)."""

    async def stream(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        q = request.query_params
        after = request.headers.get("last-event-id") or q.get("after") or None
        topic = q.get("topic") or None
        if topic is not None:
            check_topic(topic)  # InvalidArgumentError: 400
        if after is not None:
            check_message_id(after, "Last-Event-ID / after")
        try:
            await client.run(run_id).status()
        except RunNotFoundError:
            return Response(f"no run {run_id}", 404, media_type="text/plain")
        body: Any = output_events(client, run_id, topic, after)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    return stream
