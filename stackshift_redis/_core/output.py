"""Run output streams, the pure part: messages, their entries in Redis, checks (no I/O).

A run's output is one Redis stream, `keys.output(run_id)` (lua/publish.lua writes it). An
entry is `{a: attempt, t: topic (absent for "default"), d: data}`; each finish of a run
that has a stream adds `{e: status}`, which readers take as the end (after a retry a run
may publish again, so the end is confirmed by the run's status). Entry ids are
`<ms>-<seq>` on the scripts' clock (a TestEnv's virtual one): `msg.at` is that time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import InvalidArgumentError
from .keys import check_name
from .records import check_int
from .serializer import Serializer

DEFAULT_TOPIC = "default"
DEFAULT_MAX_MESSAGES = 10_000
MAX_MESSAGES_LIMIT = 10_000_000
_ID_RE = re.compile(r"^\d{1,20}-\d{1,20}$")


@dataclass(frozen=True)
class StreamMessage:
    """One message a run published (`ctx.publish`), as `run.stream()` yields it."""

    id: str
    """The message id (`<ms>-<seq>`): pass it as `after=` to resume after this message."""
    topic: str
    """The topic it was published on ("default" unless given)."""
    data: Any
    """The published value, as the run's serializer returns it."""
    at: datetime
    """When it was published (aware, UTC; the Redis server's clock)."""
    attempt: int
    """The attempt that published it (`ctx.attempt`): a later attempt may publish again."""


def check_topic(topic: object) -> str:
    """A topic name: `[A-Za-z0-9_.:-]{1,128}` (InvalidArgumentError otherwise)."""
    return check_name("topic", topic)


def check_message_id(value: object, what: str = "after") -> str:
    """A message id (`<ms>-<seq>`, as `StreamMessage.id`); InvalidArgumentError otherwise."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidArgumentError(
            f"{what} must be a message id like '1764180000000-0', not {value!r}"
        )
    return value


def check_max_messages(value: object, job: str) -> int:
    """A job's `max_stream_messages`: an int in 1..10,000,000."""
    return check_int(value, f"job {job!r}: max_stream_messages", 1, MAX_MESSAGES_LIMIT)


def message_at(entry_id: str) -> datetime:
    """The time in an entry id."""
    return datetime.fromtimestamp(int(entry_id.split("-", 1)[0]) / 1000, UTC)


def end_of(fields: dict[bytes, bytes]) -> str | None:
    """The final status an end entry carries, or None for a message."""
    status = fields.get(b"e")
    return None if status is None else status.decode()


def topic_of(fields: dict[bytes, bytes]) -> str:
    """The topic of a message entry."""
    topic = fields.get(b"t")
    return topic.decode() if topic is not None else DEFAULT_TOPIC


def parse_message(entry_id: str, fields: dict[bytes, bytes], ser: Serializer) -> StreamMessage:
    """A message entry as a StreamMessage (data through the run's serializer)."""
    return StreamMessage(
        id=entry_id,
        topic=topic_of(fields),
        data=ser.loads(fields[b"d"]),
        at=message_at(entry_id),
        attempt=int(fields.get(b"a", b"1")),
    )


def str_id(value: Any) -> str:
    """An entry id from a reply (bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)
