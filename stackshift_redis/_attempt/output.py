"""`ctx.publish`: an attempt's messages to its run's output stream (lua/publish.lua).

Publishes of one attempt go out one at a time, in call order (a lock), each with its
number within the attempt: the script keeps the last number it applied, so a call that
redis-py re-sends after a lost reply is not added twice. Each is fenced by the lease token
like every write of an attempt. Messages are not step results: a handler that runs again
(a retry, or a replay after a wait resumed it) publishes again, with its `ctx.attempt`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .._core.output import DEFAULT_MAX_MESSAGES, DEFAULT_TOPIC, check_topic
from .._core.scripts import PublishRequest
from .execution import Execution


class Publisher:
    """The publishes of one attempt."""

    def __init__(self, ex: Execution) -> None:
        self._ex = ex
        self._lock = asyncio.Lock()
        self._calls = 0

    async def publish(self, data: Any, topic: str) -> str:
        """Serialize `data` (PayloadError past the size limit: nothing is written), append it
        to the run's output stream; the message id."""
        ex = self._ex
        topic = check_topic(topic)
        raw = ex.ns.serializer.dumps(data)
        if ex.parking.parked or ex.parking.closed:  # a branch left behind: it stops
            raise ex.parking.stopped("publish")
        job = ex.ns.registry.jobs.get(ex.job)
        cap = job.max_stream_messages if job is not None else DEFAULT_MAX_MESSAGES
        async with self._lock:
            self._calls += 1
            request = PublishRequest(
                run_id=ex.run_id,
                token=ex.token,
                call=self._calls,
                attempt=ex.attempt,
                topic="" if topic == DEFAULT_TOPIC else topic,
                data=raw,
                cap=cap,
            )
            return await ex.ns.scripts_of(ex.run_id).publish(request)
