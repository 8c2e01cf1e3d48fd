"""A loop-lag watchdog: warns when the worker's event loop was blocked.

A blocking call on the event loop (`time.sleep`, a blocking SDK in an async handler)
stops everything: lease renewal too, so after `visibility_timeout` another worker takes
the run and its side effects run again. The watchdog wakes every `interval` seconds and,
when it woke later than `threshold` after its due time, logs one WARNING naming the runs
that were running then (one of them blocked the loop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("stackshift.worker")


class LoopWatchdog:
    """Measures how late the loop runs a timer; `running()` names the runs held now."""

    def __init__(
        self,
        running: Callable[[], list[tuple[str, str]]],
        threshold: float = 1.0,
        interval: float = 0.25,
    ) -> None:
        self.running = running
        self.threshold = threshold
        self.interval = interval
        self.worst = 0.0  # the longest lag seen, in seconds

    async def loop(self, stopped: asyncio.Event) -> None:
        """Watch until `stopped` is set."""
        clock = asyncio.get_running_loop().time
        while not stopped.is_set():
            due = clock() + self.interval
            await asyncio.sleep(self.interval)
            lag = clock() - due
            self.worst = max(self.worst, lag)
            if lag > self.threshold:
                runs = ", ".join(f"{run_id} ({job})" for run_id, job in self.running()[:10])
                log.warning(
                    "event loop blocked for %.1fs while running: %s. A blocking call in an "
                    "async handler stops lease renewal (another worker may take the run); "
                    "use a plain function in ctx.step.run (it runs in a thread) or "
                    "asyncio.to_thread",
                    lag,
                    runs or "no run",
                )
