"""A test seam for users: StackShift apps on in-memory fakeredis (Lua through lupa)."""

from __future__ import annotations

from typing import Any

from .app import StackShift


def fake_redis(**kwargs: Any) -> Any:
    """A fakeredis asyncio client (needs `fakeredis[lua]`)."""
    import fakeredis

    return fakeredis.FakeAsyncRedis(**kwargs)


def fake_app(namespace: str = "test", **kwargs: Any) -> StackShift:
    """A StackShift app on a fresh in-memory fakeredis server."""
    return StackShift(redis=fake_redis(), namespace=namespace, **kwargs)
