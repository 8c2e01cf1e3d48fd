"""Starting runs: validation, then one `start` script call per batch.

Concurrent single starts made in one event-loop iteration with the same job and options
are coalesced into one script call (each run still atomic on its own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._core.flow import check_priority
from .._core.keys import check_name
from .._core.namespace import Namespace
from .._core.records import Duration, epoch_ms, millis, new_run_id
from .._core.scripts import NewRun, StartReply
from ..errors import InvalidArgumentError, PayloadError
from .events import match_key
from .liveness import ConsumerWatch

MAX_IDEMPOTENCY_KEY = 512
MAX_BATCH = 500

# job, queue, delay_ms, at_ms, idem_ttl_ms, extra fields (sorted items)
Group = tuple[str, str, int, int, int, tuple[tuple[str, str], ...]]
Started = StartReply  # run id (None when skipped), deduplicated, skipped reason


def _round_trip(ns: Namespace, payload: Any) -> bytes:
    """The serialized payload, refused unless it also deserializes (a worker could not run
    a run whose payload it cannot read)."""
    data = ns.serializer.dumps(payload)
    try:
        ns.serializer.loads(data)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise PayloadError(f"payload does not deserialize back ({why})") from None
    return data


class Starter:
    """Validates and writes new runs of one namespace."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns
        self._groups: dict[Group, list[tuple[NewRun, asyncio.Future[Started]]]] = {}
        self._scheduled = False
        self._sending: set[asyncio.Future[None]] = set()
        self._watch = ConsumerWatch(ns)

    async def start_many(
        self,
        job: str,
        payloads: Sequence[Any],
        *,
        queue_name: str | None = None,
        idempotency_keys: Sequence[str] | None = None,
        idempotency_ttl: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        extra: dict[str, str] | None = None,
        priority: int | None = None,
    ) -> list[Started]:
        """(run id | None, deduplicated, skipped reason | None) per payload, in order;
        nothing is written on bad input. The job's flow-control rules (flow.py) are
        resolved against each payload here and enforced by the start script."""
        ns = self._ns
        check_name("job", job)
        if not isinstance(payloads, Sequence) or isinstance(payloads, (str, bytes)):
            raise InvalidArgumentError(f"payloads must be a list of payloads, not {payloads!r}")
        if idempotency_keys is not None and len(idempotency_keys) != len(payloads):
            raise InvalidArgumentError("idempotency_keys needs one key per payload")
        for key in idempotency_keys or ():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
                raise InvalidArgumentError(f"invalid idempotency key {key!r}")
        if delay is not None and run_at is not None:
            raise InvalidArgumentError("pass delay or run_at, not both")
        delay_ms = millis(delay, "delay") if delay is not None else 0
        if run_at is not None and not isinstance(run_at, datetime):
            raise InvalidArgumentError("run_at must be a datetime")
        at_ms = epoch_ms(run_at) if run_at is not None else 0
        ttl_ms = self._idem_ttl_ms(job, idempotency_ttl)
        jd = ns.registry.jobs.get(job)
        if priority is not None:
            prio = check_priority(priority)
        else:
            prio = jd.priority if jd is not None else 0
        plans = [""] * len(payloads)
        if jd is not None and jd.flow:
            plans = [jd.flow.plan(job, p, match_key) for p in payloads]
        try:
            encoded = [_round_trip(ns, p) for p in payloads]
        except PayloadError as exc:  # name where: payload['amount']
            raise (exc if str(exc).startswith("payload") else exc.at("payload")) from None
        queue = await ns.queue_for(job, queue_name)
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(encoded)
        fields = dict(extra or {})
        if prio:
            fields["priority"] = str(prio)
        if ns.hooks:
            fields.update({f"x:{k}": v for k, v in ns.hooks.start_fields(job, queue).items()})
        if len(encoded) == 1:  # a single start: coalesced with concurrent ones
            group = (job, queue, delay_ms, at_ms, ttl_ms, tuple(sorted(fields.items())))
            started = await self._coalesced(group, (new_run_id(), keys[0], encoded[0], plans[0]))
            await self._watch.check(job, queue)
            return [started]
        out: list[Started] = []
        for lo in range(0, len(encoded), MAX_BATCH):
            hi = min(lo + MAX_BATCH, len(encoded))
            batch: list[NewRun] = [
                (new_run_id(), keys[i], encoded[i], plans[i]) for i in range(lo, hi)
            ]
            out += await ns.scripts.start(
                job, queue, batch, delay_ms=delay_ms, at_ms=at_ms, idem_ttl_ms=ttl_ms,
                extra=fields, retention_ms=ns.settings.retention_ms,
            )  # fmt: skip
        if out:
            await self._watch.check(job, queue)
        return out

    def _idem_ttl_ms(self, job: str, override: Duration | None) -> int:
        if override is not None:
            return max(1, millis(override, "idempotency_ttl"))
        jd = self._ns.registry.jobs.get(job)
        if jd is not None and jd.idempotency_ttl is not None:
            return max(1, round(jd.idempotency_ttl * 1000))
        return self._ns.settings.idempotency_ttl_ms

    async def _coalesced(self, group: Group, run: NewRun) -> Started:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Started] = loop.create_future()
        self._groups.setdefault(group, []).append((run, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        groups, self._groups = self._groups, {}
        for group, items in groups.items():
            for lo in range(0, len(items), MAX_BATCH):
                task = asyncio.ensure_future(self._send(group, items[lo : lo + MAX_BATCH]))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(
        self, group: Group, items: list[tuple[NewRun, asyncio.Future[Started]]]
    ) -> None:
        job, queue, delay_ms, at_ms, ttl_ms, fields = group
        try:
            replies = await self._ns.scripts.start(
                job, queue, [run for run, _ in items], delay_ms=delay_ms, at_ms=at_ms,
                idem_ttl_ms=ttl_ms, extra=dict(fields), retention_ms=self._ns.settings.retention_ms,
            )  # fmt: skip
        except Exception as exc:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), reply in zip(items, replies, strict=True):
            if not fut.done():
                fut.set_result(reply)
