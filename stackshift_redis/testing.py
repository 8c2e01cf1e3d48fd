"""A test seam for users: StackShift apps on in-memory fakeredis (Lua through lupa).

Needs the `testing` extra: `pip install 'stackshift-redis[testing]'` (fakeredis[lua]).
"""

from __future__ import annotations

from typing import Any

from .app import StackShift


def fake_redis(**kwargs: Any) -> Any:
    """A fakeredis asyncio client (needs `pip install 'stackshift-redis[testing]'`)."""
    try:
        import fakeredis
    except ImportError as exc:
        raise ImportError(
            "stackshift_redis.testing needs fakeredis: pip install 'stackshift-redis[testing]'"
        ) from exc

    return fakeredis.FakeAsyncRedis(**kwargs)


def fake_app(namespace: str = "test", **kwargs: Any) -> StackShift:
    """A StackShift app on a fresh in-memory fakeredis server."""
    return StackShift(redis=fake_redis(), namespace=namespace, **kwargs)
