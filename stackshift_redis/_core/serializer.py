"""Msgpack serialization with datetime, date, time, Decimal and UUID support (msgpack ext
types), a size limit and no pickle. A value that does not serialize is reported with the
path where it sits (`['items'][2]['price']`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Protocol

import msgpack

from ..errors import PayloadError

_NAIVE_DATETIME = 1
_DECIMAL = 2
_UUID = 3
_DATE = 4
_TIME = 5
SUPPORTED = (
    "None, bool, int, float, str, bytes, list, tuple, dict, datetime, date, time, Decimal, UUID"
)
DEFAULT_MAX_BYTES = 1 << 20


class Serializer(Protocol):
    """Turns values into bytes and back. Must raise PayloadError on bad input."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _default(value: Any) -> Any:
    if isinstance(value, datetime):  # naive: aware ones use msgpack's Timestamp
        return msgpack.ExtType(_NAIVE_DATETIME, value.isoformat().encode())
    if isinstance(value, date):
        return msgpack.ExtType(_DATE, value.isoformat().encode())
    if isinstance(value, time):
        return msgpack.ExtType(_TIME, value.isoformat().encode())
    if isinstance(value, Decimal):
        return msgpack.ExtType(_DECIMAL, str(value).encode())
    if isinstance(value, uuid.UUID):
        return msgpack.ExtType(_UUID, value.bytes)
    raise TypeError(f"cannot serialize {type(value).__name__}")


_DECODE: dict[int, Callable[[bytes], Any]] = {
    _NAIVE_DATETIME: lambda b: datetime.fromisoformat(b.decode()),
    _DATE: lambda b: date.fromisoformat(b.decode()),
    _TIME: lambda b: time.fromisoformat(b.decode()),
    _DECIMAL: lambda b: Decimal(b.decode()),
    _UUID: lambda b: uuid.UUID(bytes=b),
}


def _ext_hook(code: int, data: bytes) -> Any:
    decode = _DECODE.get(code)
    return decode(data) if decode is not None else msgpack.ExtType(code, data)


_SCALARS = (type(None), bool, int, float, str, bytes, bytearray)
_LEAVES = (*_SCALARS, datetime, date, time, Decimal, uuid.UUID)  # with the ext types


def find_unserializable(value: Any, limit: int = 10_000) -> tuple[str, str] | None:
    """(path, type name) of the first value msgpack cannot take, e.g. ("['amount']",
    "Money"); None when none is found within `limit` nodes."""
    stack: list[tuple[str, Any]] = [("", value)]
    seen = 0
    while stack and seen < limit:
        path, node = stack.pop()
        seen += 1
        if isinstance(node, Mapping):
            for k, v in reversed(list(node.items())):
                if not isinstance(k, _LEAVES):
                    return f"{path} key {k!r}", type(k).__name__
                stack.append((f"{path}[{k!r}]", v))
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))
        elif not isinstance(node, _LEAVES):
            return path, type(node).__name__
    return None


class MsgpackSerializer:
    """The default serializer: None, bool, int, float, str, bytes, list, dict, datetime,
    date, time, Decimal and UUID (ext types; they come back as the same types). Tuples come
    back as lists (msgpack has one array type)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes

    def dumps(self, value: Any) -> bytes:
        try:
            data: bytes = msgpack.packb(value, default=_default, datetime=True, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            found = find_unserializable(value)
            if found is None:
                raise PayloadError(f"value does not serialize with msgpack: {exc}") from None
            path, kind = found
            raise PayloadError(
                f"{kind} does not serialize with msgpack (supported: {SUPPORTED}; or pass "
                f"serializer=)",
                path=path,
            ) from None
        if len(data) > self.max_bytes:
            raise PayloadError(f"serialized size {len(data)} B exceeds {self.max_bytes} B")
        return data

    def loads(self, data: bytes) -> Any:
        return msgpack.unpackb(
            data, raw=False, timestamp=3, ext_hook=_ext_hook, strict_map_key=False
        )


def round_trip(serializer: Serializer, value: Any, what: str) -> tuple[bytes, Any]:
    """`value` serialized and read back: (bytes, the value a reader gets). PayloadError,
    naming `what` ("event data", "payload"), when it does not serialize or does not read
    back: some values pack but never unpack (a dict with tuple keys comes back with list
    keys, which are unhashable), and a stored value nobody can read breaks its readers.
    Every write of user data goes through here, before anything is written."""
    try:
        data = serializer.dumps(value)
    except PayloadError as exc:
        raise exc.at(what) from None
    try:
        back = serializer.loads(data)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise PayloadError(f"{what} does not deserialize back ({why})") from None
    return data, back


def dumps_checked(serializer: Serializer, value: Any, what: str) -> bytes:
    """`value` serialized, refused with PayloadError unless it reads back (see round_trip)."""
    return round_trip(serializer, value, what)[0]
