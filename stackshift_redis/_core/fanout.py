"""Reads that look across all runs of a namespace (docs/design/partitions.md §3): the same
commands on every partition, their replies summed or merged.

With one partition every helper makes exactly the calls one plain read made: one await,
or one pipeline holding the commands of `ns.keys`. With P partitions the commands of all
partitions share one pipeline (a cluster pipeline sends each node its own), or the
script calls run concurrently, one per partition.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from .keys import Keys
from .namespace import Namespace

T = TypeVar("T")


async def each(ns: Namespace, fn: Callable[[int], Awaitable[T]]) -> list[T]:
    """`fn(p)` for every partition p, concurrently; one plain await with one partition.
    Every call ends before the first error (in partition order) is raised."""
    if ns.partitions == 1:
        return [await fn(0)]
    done = await asyncio.gather(*(fn(p) for p in range(ns.partitions)), return_exceptions=True)
    for result in done:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], done)


async def pipelined(ns: Namespace, add: Callable[[Any, int, Keys], None]) -> list[list[Any]]:
    """One pipeline holding `add(pipe, p, keys)`'s commands for each partition p and its
    keys; the replies of each partition, in partition order (no round trip when nothing
    was added)."""
    async with ns.redis.pipeline(transaction=False) as pipe:
        sizes: list[int] = []
        for p, keys in enumerate(ns.part_keys):
            before = len(pipe)
            add(pipe, p, keys)
            sizes.append(len(pipe) - before)
        replies = list(await pipe.execute()) if sum(sizes) else []
    out: list[list[Any]] = []
    at = 0
    for n in sizes:
        out.append(replies[at : at + n])
        at += n
    return out


def sum_rows(rows: Sequence[Sequence[Any]]) -> list[int]:
    """Element-wise sums of equally long rows of counts (None counts 0)."""
    if not rows:
        return []
    return [sum(int(v or 0) for v in col) for col in zip(*rows, strict=True)]


def merge_desc(
    lists: Iterable[Iterable[T]], key: Callable[[T], Any], limit: int | None = None
) -> list[T]:
    """K-way merge of lists each sorted by `key` descending (run ids: newest first), at
    most `limit` items."""
    merged = heapq.merge(*lists, key=key, reverse=True)
    out: list[T] = []
    for item in merged:
        if limit is not None and len(out) >= limit:
            break
        out.append(item)
    return out
