"""Requests of the script calls with many arguments: one frozen dataclass per script,
named after it (`SendEventRequest` for `send_event`), built by callers with keywords.

They are plain data: the Scripts method of the same name turns one into KEYS and ARGV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .door import DueSchedule

Fields = tuple[tuple[str, str], ...]  # run fields as sorted (name, value) pairs: hashable


def fields_of(extra: dict[str, str] | None) -> Fields:
    """Run fields as `StartRequest.fields` holds them."""
    return tuple(sorted(extra.items())) if extra else ()


@dataclass(frozen=True)
class StartRequest:
    """What the runs of one `start` call share. Hashable: the start coalescer batches
    concurrent single starts by it (starting.py)."""

    job: str
    queue: str
    idem_ttl_ms: int
    delay_ms: int = 0
    at_ms: int = 0  # epoch ms to run at, or 0
    fields: Fields = ()  # extra run fields: priority, hook fields ("x:<name>")
    retention_ms: int = 0  # 0: one day
    rev: str = ""  # definitions revision the plans were made from ("": not checked)
    version: int = 0  # the version to pin the runs to (0: the highest live one)


@dataclass(frozen=True)
class FailRequest:
    """End a failed attempt (`fail`): outcome retry | failed | cancelled."""

    run_id: str
    token: str
    error_json: str
    outcome: str
    retention_ms: int
    delay_ms: int = 0  # a retry's delay


@dataclass(frozen=True)
class HandBackRequest:
    """Hand a run of a job this worker does not register back (`hand_back`): scheduled
    again after `delay_ms`, or failed with `error_json` once handed back for `limit_ms`."""

    run_id: str
    token: str
    delay_ms: int
    limit_ms: int
    retention_ms: int
    error_json: str


@dataclass(frozen=True)
class SleepRequest:
    """Register a timer as a pending wait of step `step` (`sleep`): `rel_ms` from now or
    at `until_ms` (-1 for the other); `record`: the step's record once it is over."""

    run_id: str
    token: str
    step: str
    rel_ms: int
    until_ms: int
    record: bytes
    park: bool = False  # nothing else runs: park the run in the same call


@dataclass(frozen=True)
class WaitEventRequest:
    """Match a recent event or register a pending wait for one (`wait_event`)."""

    run_id: str
    token: str
    step: str
    event: str
    shape: str  # the match's shape and values key (events.match_key)
    values_key: str
    timeout_ms: int  # -1: none
    lookback_ms: int
    timed_out_record: bytes
    received_prefix: bytes
    park: bool = False


@dataclass(frozen=True)
class InvokeRequest:
    """Start child run `child_id` once per (parent, step) and wait for it (`invoke`).
    records: (timed-out record, completed-record prefix, failed-record prefix)."""

    run_id: str
    token: str
    step: str
    job: str
    queue: str
    child_id: str
    payload: bytes
    timeout_ms: int  # -1: none
    idem_ttl_ms: int
    records: tuple[bytes, bytes, bytes]
    fields: dict[str, str] = field(default_factory=dict)  # the child's hook fields
    park: bool = False
    rev: str = ""  # definitions revision the plan was made from ("": not checked)
    plan: str = ""  # the child's flow-control plan JSON (flow.py), or ""


@dataclass(frozen=True)
class BulkRequest:
    """One batch of cancel_runs/retry_runs over the status index `index` (`bulk`).
    created_ms: (after, before), -1 for none; cursor: (score, run id, upto), "" to begin
    and for upto "now"."""

    index: str
    action: str  # cancel | retry
    status: str
    job: str  # "" for every job
    created_ms: tuple[int, int]
    cursor: tuple[str, str, str]
    limit: int
    reason: str
    retention_ms: int
    budget_us: int
    order: str = "time"  # of `index`: time (idx), id (ord: queued) or lease (running)


@dataclass(frozen=True)
class SendEventRequest:
    """Record an event once (`send_event`); see EventScripts.send_event."""

    name: str
    event_id: str
    encoded: bytes  # the stored event (a waiting step's result)
    flat_json: str  # its data flattened for matching
    payload: bytes  # the payload of the runs it starts
    dedupe_ms: int
    log_ms: int
    local_triggers: dict[str, str]  # job -> queue of on_event jobs registered here
    call_token: str
    fields: dict[str, str] = field(default_factory=dict)  # hook fields of the runs it starts
    retention_ms: int = 0  # 0: one day
    plans: dict[str, str] = field(default_factory=dict)  # job -> flow-control plan JSON
    rev: str = ""  # definitions revision the plans were made from ("": not checked)


@dataclass(frozen=True)
class UpsertScheduleRequest:
    """Create or update a schedule (`upsert_schedule`)."""

    name: str
    job: str
    queue: str
    payload: bytes
    cron: str  # "" for an interval
    every_ms: int  # 0 for a cron
    timezone: str
    signature: str
    overlap: str
    catchup: str
    jitter_ms: int
    origin: str
    next_ms: int


@dataclass(frozen=True)
class FireScheduleRequest:
    """Fire `ticks` (tick ms, run id, jitter ms) of `due` and advance it to `next_ms`, if
    `due` is still current (`fire_schedule`)."""

    due: DueSchedule
    next_ms: int
    ticks: Sequence[tuple[int, str, int]]
    retention_ms: int
    rev: str = ""  # definitions revision the plan was made from ("": not checked)
    plan: str = ""  # the runs' flow-control plan JSON (flow.py), or ""


@dataclass(frozen=True)
class PublishRequest:
    """Append `data` to a running run's output stream (`publish`), capped at `cap` entries.
    `call` numbers the attempt's publishes (1, 2, ...): a re-sent call is recognised."""

    run_id: str
    token: str
    call: int
    attempt: int
    topic: str  # "" for the default topic
    data: bytes
    cap: int


@dataclass(frozen=True)
class TransactRequest:
    """One commit of a transactional step (`transact`): reads are (state name, raw bytes
    seen or None), writes (name, op 's' | 'k' | 'd', bytes, ttl_ms), events prepared
    send_event requests, starts (StartRequest, one NewRun) pairs; `summary` is the JSON the
    timeline entry carries (what the commit applied); `legs`: see lua/transact.lua."""

    run_id: str
    token: str
    step: str
    record: bytes
    commit_token: str
    reads: tuple[tuple[str, bytes | None], ...]
    writes: tuple[tuple[str, str, bytes, int], ...]
    events: tuple[SendEventRequest, ...]
    starts: tuple[tuple[StartRequest, tuple[str, str | None, bytes, str]], ...]
    summary: str
    retention_ms: int
    dedupe_ms: int
    log_ms: int
    # with partitions: per event, the (partition, send_event call) of its legs on the
    # partitions other than the commit's (events then hold the commit partition's legs)
    legs: tuple[tuple[tuple[int, SendEventRequest], ...], ...] = ()
    # with partitions: the starts of runs on other partitions than the commit's (outbox
    # entries 'tx_start'), as `starts`
    far_starts: tuple[tuple[StartRequest, tuple[str, str | None, bytes, str]], ...] = ()
