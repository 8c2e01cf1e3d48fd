"""Partitions: one namespace spread over P hash tags (API.md "Partitions").

With P = 1 every key carries the tag `{ns}`: today's layout, unchanged. With P > 1 the
namespace-wide keys (meta, definitions, the job map, workers, schedules) keep `{ns}` and
partition p uses the tag `{ns/p.salt}` ('/' is not allowed in names, so no namespace can
clash with it). `salt` is the least integer that puts the tag's slot in the p-th of P equal
slot ranges: a default cluster hands masters contiguous ranges, so the partitions spread
over the masters evenly (plain `{ns/p}` tags land where CRC16 sends them, often lopsided).

A run id made for a namespace with P > 1 carries its partition: `<24 hex>-<p>`. Every
lookup by id then goes to one slot, and ids still sort by creation time across partitions.
"""

from __future__ import annotations

import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ..errors import InvalidArgumentError

MAX_PARTITIONS = 256
ID_LENGTH = 24  # hex digits of an id without its partition (records.new_run_id)


def check_partitions(value: object) -> int:
    """A partition count: an int from 1 to MAX_PARTITIONS (InvalidArgumentError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PARTITIONS:
        raise InvalidArgumentError(
            f"partitions must be an int from 1 to {MAX_PARTITIONS}, not {value!r}"
        )
    return value


def partition_tags(namespace: str, partitions: int) -> list[str]:
    """The hash tag of each partition: `[namespace]` for one, else `ns/p.salt` with the
    least salt whose slot falls in the p-th of `partitions` equal slot ranges."""
    if partitions == 1:
        return [namespace]
    tags: list[str] = []
    for p in range(partitions):
        low = p * REDIS_CLUSTER_HASH_SLOTS // partitions
        high = (p + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions
        salt = 0
        while not low <= key_slot(f"{namespace}/{p}.{salt}".encode()) < high:
            salt += 1
        tags.append(f"{namespace}/{p}.{salt}")
    return tags


def partition_of(run_id: str, partitions: int) -> int:
    """The partition a run id names (`<24 hex>-<p>`), or 0: for one partition, and for an
    id of no partition (it is looked up on partition 0, where it is not found)."""
    if partitions == 1 or len(run_id) <= ID_LENGTH + 1 or run_id[ID_LENGTH] != "-":
        return 0
    tail = run_id[ID_LENGTH + 1 :]
    if not tail.isdigit():
        return 0
    part = int(tail)
    return part if part < partitions else 0


def id_suffix(partition: int | None) -> str:
    """What a new run id of that partition ends with ('' when the namespace has one)."""
    return "" if partition is None else f"-{partition}"


def route(value: str, partitions: int) -> int:
    """The partition of a routing value (a partition key, flow-control key or idempotency
    key): CRC32 mod P, the same in every process and release (never Python's `hash`)."""
    return zlib.crc32(value.encode()) % partitions


def name_route(name: str, partitions: int) -> int:
    """The partition of a state value or lock named `name`: the text between its first
    `{` and the next `}` when there is some (as Redis Cluster's hash tags), else the whole
    name. `{customer:42}:balance` lives where runs started with
    `partition_key="customer:42"` do, so a transactional step of such a run can use it."""
    start = name.find("{")
    end = name.find("}", start + 1) if start >= 0 else -1
    if end > start + 1:
        return route(name[start + 1 : end], partitions)
    return route(name, partitions)
