"""Which partition a new run goes to (API.md "Partitions"): its `partition_key`, else its
flow-control key, else its idempotency key, else a random one. With one partition every
run goes to partition 0 and nothing here is computed.

A job's flow-control state (concurrency slots, throttles, rate limits, debounce and
singleton keys) lives on one partition per key value, so every rule of a run must agree
on that value: runs of one flow-control key always share a partition. A job whose rules
key on different values, or a `partition_key` given for a job with such rules, would
split a rule's state over partitions: refused with InvalidArgumentError.
"""

from __future__ import annotations

import random
from typing import Any

from ..errors import InvalidArgumentError
from .flow import Flow, key_id, key_value
from .partitions import route

SEP = "\x1f"


def flow_value(job: str, flow: Flow, payload: Any) -> str | None:
    """The routing value of a run by its job's stateful flow rules (`job` and the rules'
    one key value; `*` for rules without a key), or None when the job has none."""
    values = {key_id(key_value(c.key, payload, "Concurrency key")) for c in flow.concurrency}
    for name, rule in (
        ("Throttle", flow.throttle),
        ("RateLimit", flow.rate_limit),
        ("Debounce", flow.debounce),
        ("Singleton", flow.singleton),
    ):
        if rule is not None:
            values.add(key_id(key_value(rule.key, payload, f"{name} key")))
    if not values:
        return None
    if len(values) > 1:
        raise InvalidArgumentError(
            f"job {job!r}: its flow-control rules key on different values "
            f"({', '.join(sorted(values))}); with partitions above 1 every rule of a job "
            "must use the same key (or none), so that its runs share one partition"
        )
    return job + SEP + values.pop()


def pick_partition(
    partitions: int,
    job: str,
    flow: Flow | None,
    payload: Any,
    partition_key: str | None = None,
    idempotency_key: str | None = None,
    near: int | None = None,
) -> int:
    """The partition of a new run of `job` (0 when the namespace has one); `near`: the
    partition of the run making it, for a run no key routes (else a random one)."""
    if partitions == 1:
        return 0
    by_flow = flow_value(job, flow, payload) if flow else None
    if partition_key is not None:
        if by_flow is not None:
            raise InvalidArgumentError(
                f"job {job!r} has flow-control rules: its runs go to the partition of their "
                "flow-control key, so partition_key cannot be given"
            )
        return route(partition_key, partitions)
    if by_flow is not None:
        return route(by_flow, partitions)
    if idempotency_key is not None:
        return idempotency_partition(job, idempotency_key, partitions)
    return random.randrange(partitions) if near is None else near


def idempotency_partition(job: str, key: str, partitions: int) -> int:
    """Where a run started with only an idempotency key goes (find_run looks there first)."""
    return route(job + SEP + key, partitions)
