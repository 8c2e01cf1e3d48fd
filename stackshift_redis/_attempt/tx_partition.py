"""Where a transactional step commits when the namespace has partitions.

A commit is one script on one partition. Its state must therefore live on one partition:
the run's (the usual commit, fenced by the lease), or another one (a remote commit,
lua/transact.lua: the record is kept there and copied to the run, at once by the caller
and durably through the outbox). A name's braced part routes it like a partition_key
(`{customer:42}:balance`), which is how related values are kept together.
"""

from __future__ import annotations

from ..errors import NonRetriableError
from .execution import Execution
from .statetx import StateTx


def _refuse(ex: Execution, key: str, what: str) -> NonRetriableError:
    return NonRetriableError(
        f"transactional step {key!r} of run {ex.run_id}: with partitions, {what} "
        "(docs/guides/scaling-out.md)"
    )


def commit_partition(ex: Execution, key: str, tx: StateTx) -> int:
    """The partition the step commits on: its state's, else its run's (0 with one)."""
    ns = ex.ns
    if ns.partitions == 1:
        return 0
    parts = {ns.part_of_name(n) for n in {*tx.reads, *tx.writes}}
    if len(parts) > 1:
        names = ", ".join(repr(n) for n in sorted({*tx.reads, *tx.writes}))
        raise _refuse(
            ex,
            key,
            f"the state of one commit must share a partition, and {names} do not: give "
            "them one braced part, e.g. '{customer:42}:balance' and '{customer:42}:orders'",
        )
    if tx.events:
        raise _refuse(ex, key, "a commit cannot send events yet")
    return parts.pop() if parts else ns.part_of(ex.run_id)


def check_starts(ex: Execution, key: str, at: int, run_ids: list[str]) -> None:
    """The runs a commit on partition `at` starts must live there."""
    if any(ex.ns.part_of(r) != at for r in run_ids):
        raise _refuse(
            ex,
            key,
            f"a commit on partition {at} can only start runs there (no key, or a key of it)",
        )


async def record_remote(ex: Execution, key: str, record: bytes, token: str, summary: str) -> None:
    """Record a step committed on another partition on its run now (the outbox entry the
    commit wrote does the same, later, should this process die first)."""
    fields = [b"step", key.encode(), b"record", record, b"token", token.encode()]
    fields += [b"summary", summary.encode()]
    await ex.ns.scripts_of(ex.run_id).apply_outbox(
        "tx_record", ex.run_id, fields, ex.ns.settings.retention_ms
    )
