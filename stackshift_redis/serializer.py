"""Msgpack serialization with datetime support, a size limit and no pickle."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import msgpack

from .errors import PayloadError

_NAIVE_DATETIME = 1
DEFAULT_MAX_BYTES = 1 << 20


class Serializer(Protocol):
    """Turns values into bytes and back. Must raise PayloadError on bad input."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _default(value: Any) -> Any:
    if isinstance(value, datetime):  # naive: aware ones use msgpack's Timestamp
        return msgpack.ExtType(_NAIVE_DATETIME, value.isoformat().encode())
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _NAIVE_DATETIME:
        return datetime.fromisoformat(data.decode())
    return msgpack.ExtType(code, data)


class MsgpackSerializer:
    """The default serializer: None, bool, int, float, str, bytes, list, dict, datetime."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes

    def dumps(self, value: Any) -> bytes:
        try:
            data: bytes = msgpack.packb(value, default=_default, datetime=True, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise PayloadError(f"value does not serialize with msgpack: {exc}") from None
        if len(data) > self.max_bytes:
            raise PayloadError(f"serialized size {len(data)} B exceeds {self.max_bytes} B")
        return data

    def loads(self, data: bytes) -> Any:
        return msgpack.unpackb(
            data, raw=False, timestamp=3, ext_hook=_ext_hook, strict_map_key=False
        )
