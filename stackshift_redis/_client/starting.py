"""Starting runs: validation, then one `start` script call per batch.

Concurrent single starts made in one event-loop iteration with the same StartRequest (job,
queue and options) are coalesced into one script call (each run still atomic on its own);
a start made while no other is in flight (one at a time) is sent at once, without waiting
for the next loop iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._core.batching import TickBatcher
from .._core.definitions import Rules
from .._core.flow import check_priority
from .._core.keys import check_name
from .._core.namespace import Namespace
from .._core.records import Duration, epoch_ms, millis
from .._core.routing import pick_partition
from .._core.scripts import NewRun, StartReply, StartRequest, fields_of
from .._core.serializer import dumps_checked
from ..errors import InvalidArgumentError, PayloadError, StaleDefinitionsError
from .events import match_key
from .liveness import ConsumerWatch

MAX_IDEMPOTENCY_KEY = 512
MAX_BATCH = 500
STALE_TRIES = 5  # definitions changing under one start this often is a publishing storm
Started = StartReply  # run id (None when skipped), deduplicated, skipped reason


@dataclass(frozen=True, kw_only=True)
class StartOptions:
    """The options of one `start` / `start_many` call, validated when built; the client,
    the sync facade and the starter pass it on as it is (see `Client.start`)."""

    queue_name: str | None = None
    idempotency_keys: Sequence[str] | None = None  # one per payload (a tuple once built)
    idempotency_ttl: Duration | None = None
    delay: Duration | None = None
    run_at: datetime | None = None
    priority: int | None = None
    version: int | None = None  # pin the runs to this job version (None: the highest live)
    partition_key: str | None = None  # with partitions: where the runs go (routing.py)
    delay_ms: int = field(default=0, init=False, repr=False)
    at_ms: int = field(default=0, init=False, repr=False)  # run_at in epoch ms, or 0
    idem_ttl_ms: int | None = field(default=None, init=False, repr=False)  # if given

    def __post_init__(self) -> None:
        keys = self.idempotency_keys
        if keys is not None:
            keys = tuple(keys)
            object.__setattr__(self, "idempotency_keys", keys)
        for key in keys or ():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
                raise InvalidArgumentError(f"invalid idempotency key {key!r}")
        if self.delay is not None and self.run_at is not None:
            raise InvalidArgumentError("pass delay or run_at, not both")
        if self.delay is not None:
            object.__setattr__(self, "delay_ms", millis(self.delay, "delay"))
        if self.run_at is not None:
            if not isinstance(self.run_at, datetime):
                raise InvalidArgumentError("run_at must be a datetime")
            object.__setattr__(self, "at_ms", epoch_ms(self.run_at))
        if self.idempotency_ttl is not None:
            ttl_ms = max(1, millis(self.idempotency_ttl, "idempotency_ttl"))
            object.__setattr__(self, "idem_ttl_ms", ttl_ms)
        if self.priority is not None:
            check_priority(self.priority)
        pk = self.partition_key
        if pk is not None and (not isinstance(pk, str) or not 0 < len(pk) <= MAX_IDEMPOTENCY_KEY):
            raise InvalidArgumentError(f"invalid partition_key {pk!r}")
        v = self.version
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise InvalidArgumentError(f"version must be an int >= 1, not {v!r}")


def _local_version(rules: Rules | None) -> int:
    """The version to pin to when the caller knows it: a local definition's highest while
    none is published, 1 when the published definition has no other version (the script
    then skips its lookup); else 0: the script picks the highest live version."""
    if rules is None:
        return 0
    if not rules.published or rules.max_version == 1:
        return rules.max_version
    return 0


def _round_trip(ns: Namespace, payload: Any) -> bytes:
    """The serialized payload, refused unless it also deserializes (a worker could not run
    a run whose payload it cannot read)."""
    return dumps_checked(ns.serializer, payload, "payload")


class Starter:
    """Validates and writes new runs of one namespace."""

    def __init__(self, ns: Namespace) -> None:
        self._ns = ns
        self._single = TickBatcher(self._send, limit=MAX_BATCH, eager=True)  # module docstring
        self._watch = ConsumerWatch(ns)

    async def start_many(
        self, job: str, payloads: Sequence[Any], options: StartOptions
    ) -> list[Started]:
        """(run id | None, deduplicated, skipped reason | None) per payload, in order;
        nothing is written on bad input. The job's rules (published in Redis, else this
        process's definition: _core/definitions.py) are resolved against each payload here
        and enforced by the start script, which refuses a start made from outdated
        definitions (STALE): they are reloaded and the same runs sent again (a run id is
        created at most once, so runs of a batch that was written are not written twice)."""
        ids: list[str] | None = None
        for tries in range(STALE_TRIES):
            request, runs = await self.prepare(job, payloads, options, tries > 0, ids)
            ids = [r[0] for r in runs]
            try:
                out = await self._send_all(request, runs)
            except StaleDefinitionsError:
                continue
            if out:
                await self._watch.check(job, request.queue)
            return out
        raise StaleDefinitionsError(f"job {job!r}: definitions kept changing during the start")

    async def prepare(
        self,
        job: str,
        payloads: Sequence[Any],
        options: StartOptions,
        reload: bool = False,
        ids: list[str] | None = None,
        near: int | None = None,
    ) -> tuple[StartRequest, list[NewRun]]:
        """The start call of `payloads`, checked, with the rules of the definitions loaded
        (`reload`: fetched again); a transactional step's commit makes the runs too
        (lua/lib/start_once.lua)."""
        ns = self._ns
        check_name("job", job)
        if not isinstance(payloads, Sequence) or isinstance(payloads, (str, bytes)):
            raise InvalidArgumentError(f"payloads must be a list of payloads, not {payloads!r}")
        keys = options.idempotency_keys
        if keys is not None and len(keys) != len(payloads):
            raise InvalidArgumentError("idempotency_keys needs one key per payload")
        try:
            encoded = [_round_trip(ns, p) for p in payloads]
        except PayloadError as exc:  # name where: payload['amount']
            raise (exc if str(exc).startswith("payload") else exc.at("payload")) from None
        rev = await ns.definitions.load(force=reload)
        rules = ns.definitions.rules(job)
        if rules is None:
            ns.definitions.warn(job, "gets the default rules")
        plans = [""] * len(payloads)
        if rules is not None and rules.flow:
            plans = [rules.plan(p, match_key) for p in payloads]
        if rules is not None and options.queue_name is None:
            queue = rules.queue
        else:
            queue = await ns.queue_for(job, options.queue_name)
        request = self._request(job, queue, rules, options, rev)
        run_ids = ids or [
            ns.new_run_id(
                pick_partition(
                    ns.partitions,
                    job,
                    rules.flow if rules is not None else None,
                    p,
                    options.partition_key,
                    keys[i] if keys else None,
                    near,
                )
            )
            for i, p in enumerate(payloads)
        ]
        runs: list[NewRun] = [
            (run_ids[i], keys[i] if keys else None, data, plans[i])
            for i, data in enumerate(encoded)
        ]
        return request, runs

    def _request(
        self, job: str, queue: str, rules: Rules | None, options: StartOptions, rev: str
    ) -> StartRequest:
        ns = self._ns
        prio = options.priority
        if prio is None:
            prio = rules.priority if rules is not None else 0
        fields = {"priority": str(prio)} if prio else {}
        if ns.hooks:
            fields.update({f"x:{k}": v for k, v in ns.hooks.start_fields(job, queue).items()})
        return StartRequest(
            job=job,
            queue=queue,
            idem_ttl_ms=self._idem_ttl_ms(rules, options),
            delay_ms=options.delay_ms,
            at_ms=options.at_ms,
            fields=fields_of(fields),
            retention_ms=ns.settings.retention_ms,
            rev=rev,
            version=options.version or _local_version(rules),
        )

    async def _send_all(self, request: StartRequest, runs: list[NewRun]) -> list[Started]:
        if len(runs) == 1:  # a single start: coalesced with concurrent ones
            return [await self._single.submit(request, runs[0])]
        out: list[Started] = []
        for lo in range(0, len(runs), MAX_BATCH):
            out += await self._send(request, runs[lo : lo + MAX_BATCH])
        return out

    def _idem_ttl_ms(self, rules: Rules | None, options: StartOptions) -> int:
        if options.idem_ttl_ms is not None:
            return options.idem_ttl_ms
        if rules is not None and rules.idempotency_ttl is not None:
            return max(1, round(rules.idempotency_ttl * 1000))
        return self._ns.settings.idempotency_ttl_ms

    async def _send(self, request: StartRequest, runs: list[NewRun]) -> list[Started]:
        """One `start` call for the single starts of one tick that share `request` (one per
        partition when the runs are on several, sent concurrently)."""
        ns = self._ns
        if ns.partitions == 1:
            return await ns.scripts.start(request, runs)
        where: dict[int, list[int]] = {}
        for i, run in enumerate(runs):
            where.setdefault(ns.part_of(run[0]), []).append(i)
        replies = await asyncio.gather(
            *(ns.part_scripts(p).start(request, [runs[i] for i in at]) for p, at in where.items())
        )
        out: list[Started | None] = [None] * len(runs)
        for at, reply in zip(where.values(), replies, strict=True):
            for i, started in zip(at, reply, strict=True):
                out[i] = started
        return [o for o in out if o is not None]
