"""Worker lifecycle hooks: `@stackshift.on_startup` / `@stackshift.on_shutdown`.

Startup hooks run once per worker, before it claims anything, and fill a `resources` dict
(a DB pool, an HTTP client) that handlers reach as `ctx.resources`; shutdown hooks run once
after the last attempt finished or was handed back. Hooks may be `async def` or plain
functions taking the dict. A startup hook that raises stops the worker: `startup()` raises
`StartupError` with one line naming the hook and the cause (the CLI exits non-zero).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from .._core.namespace import Namespace
from ..errors import StackShiftError

log = logging.getLogger("stackshift.worker")
LifecycleHook = Callable[[dict[str, Any]], Any]


class StartupError(StackShiftError):
    """A startup hook raised: the worker stops before it claims anything."""


def _name(fn: LifecycleHook) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


async def _call(fn: LifecycleHook, resources: dict[str, Any]) -> None:
    value = fn(resources)
    if inspect.isawaitable(value):
        await value


class Lifecycle:
    """Runs the startup and shutdown hooks of one worker, around its resources."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.resources: dict[str, Any] = {}
        self._started: list[LifecycleHook] = []
        self._shut = False

    async def startup(self) -> None:
        """Run every startup hook in order; StartupError when one raises (the shutdown
        hooks still run, so what earlier hooks opened is closed)."""
        for fn in self.ns.registry.startup:
            try:
                await _call(fn, self.resources)
            except Exception as exc:
                await self.shutdown()
                msg = f"startup hook {_name(fn)} failed: {type(exc).__name__}: {exc}"
                raise StartupError(msg) from exc
            self._started.append(fn)

    async def shutdown(self) -> None:
        """Run every shutdown hook once; a hook that raises is logged in one line."""
        if self._shut:
            return
        self._shut = True
        for fn in self.ns.registry.shutdown:
            try:
                await _call(fn, self.resources)
            except Exception as exc:
                log.error("shutdown hook %s failed: %s: %s", _name(fn), type(exc).__name__, exc)
