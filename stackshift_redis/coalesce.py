"""Coalesces concurrent start() calls: the calls made in one event-loop iteration with the
same job and options become one `start` script call (each run still atomic on its own)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import StackShift

Group = tuple[str, str, int, int, int, str]  # job, queue, delay_ms, at_ms, idem_ttl_ms, extra
Run = tuple[str, str | None, bytes]  # run id, idempotency key, payload
MAX_BATCH = 500


class StartCoalescer:
    """Batches single starts issued concurrently into one round trip."""

    def __init__(self, app: StackShift) -> None:
        self._app = app
        self._groups: dict[Group, list[tuple[Run, asyncio.Future[tuple[str, bool]]]]] = {}
        self._scheduled = False
        self._sending: set[asyncio.Future[None]] = set()

    async def start(self, group: Group, run: Run) -> tuple[str, bool]:
        """(run id, deduplicated) once the batch holding this run is written."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[str, bool]] = loop.create_future()
        self._groups.setdefault(group, []).append((run, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        groups, self._groups = self._groups, {}
        for group, items in groups.items():
            for lo in range(0, len(items), MAX_BATCH):
                task = asyncio.ensure_future(self._send(group, items[lo : lo + MAX_BATCH]))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(
        self, group: Group, items: list[tuple[Run, asyncio.Future[tuple[str, bool]]]]
    ) -> None:
        job, queue, delay_ms, at_ms, ttl_ms, extra = group
        try:
            replies = await self._app.scripts.start(
                job, queue, [run for run, _ in items], delay_ms=delay_ms, at_ms=at_ms,
                idem_ttl_ms=ttl_ms, extra=extra,
            )  # fmt: skip
        except Exception as exc:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), reply in zip(items, replies, strict=True):
            if not fut.done():
                fut.set_result(reply)
