"""The commit of a transactional step (`transact.lua`): reads checked, writes, events,
starts and the step record in one script call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .door import Door, StartReply, _str
from .requests import TransactRequest


@dataclass(frozen=True)
class TransactReply:
    """'ok' (committed now: `started` per start, `cancel` requested for the run), 'done'
    (committed already: `record` is the stored step record) or 'conflict' (`changed`, the
    state name read that changed: nothing was written)."""

    outcome: str
    cancel: bool = False
    started: tuple[StartReply, ...] = ()
    events: tuple[tuple[bool, list[str], list[str]], ...] = ()  # duplicate, resumed, started
    record: bytes | None = None
    changed: str | None = None
    made: int = 0  # with far starts: the commit's ms (their outbox entries' 'made')
    summary: str | None = None  # a remote commit's timeline summary (as tx_record has it)


class TransactScripts(Door):
    """The commit of a transactional step."""

    def transact_call(
        self, q: TransactRequest, remote: bool = False
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `transact` (see lua/transact.lua's header); `remote`: a commit
        on the state's partition, not the run's."""
        k = self.keys
        keys: list[str] = [k.tx_commit(q.run_id) if remote else k.run(q.run_id)]
        keys += [k.state(name) for name, _ in q.reads]
        keys += [k.state(w[0]) for w in q.writes]
        counts = f"{len(q.reads)} {len(q.writes)} {len(q.events)} {len(q.starts)}"
        if q.legs or q.far_starts:  # partitions: a 6th count, events' legs (5th: remote)
            counts += f" {int(remote)} {int(bool(q.legs))}"
            if q.far_starts:  # and a 7th: starts on other partitions
                counts += f" {len(q.far_starts)}"
        elif remote:
            counts += " 1"
        args: list[Any] = [k.prefix, q.run_id, q.token, q.step, q.record, q.commit_token]
        args += [counts, q.retention_ms or 86_400_000, q.dedupe_ms, q.log_ms, q.summary]
        args += [b"-" if seen is None else b"=" + seen for _, seen in q.reads]
        for _, op, data, ttl_ms in q.writes:
            args += [op, data, ttl_ms]
        for i, e in enumerate(q.events):
            keys += [k.event_seen(e.event_id), k.event_log(e.name), k.event_data(e.name)]
            keys += [k.event_shapes(e.name), k.triggers(e.name), k.event_names()]
            args += [e.name, e.event_id, e.encoded, e.flat_json, e.payload]
            args += [json.dumps(e.local_triggers), json.dumps(e.fields) if e.fields else ""]
            args += [json.dumps(e.plans)]
            if q.legs:
                others = [
                    [str(p), json.dumps(leg.local_triggers), json.dumps(leg.plans)]
                    for p, leg in q.legs[i]
                ]
                args.append(json.dumps(others))
        for r, (run_id, idem, payload, plan) in q.starts:
            keys += [k.run(run_id), k.idem(r.job, idem) if idem is not None else k.run(run_id)]
            args += [r.job, r.queue, run_id, "1" if idem is not None else "0", payload, plan]
            args += [r.delay_ms, r.at_ms, r.idem_ttl_ms]
            args += [json.dumps(dict(r.fields)) if r.fields else "", r.version]
        for r, (run_id, idem, payload, plan) in q.far_starts:
            args += [r.job, r.queue, run_id, "1" if idem is not None else "0", idem or ""]
            args += [payload, plan, r.delay_ms, r.at_ms, r.idem_ttl_ms]
            args += [json.dumps(dict(r.fields)) if r.fields else "", r.version]
        return keys, args

    async def transact(self, request: TransactRequest, remote: bool = False) -> TransactReply:
        """Commit a transactional step once (LeaseLostError when the lease is gone)."""
        keys, args = self.transact_call(request, remote)
        reply = await self.call("transact", keys, args)
        outcome = _str(reply[0])
        if outcome == "conflict":
            return TransactReply(outcome, changed=request.reads[int(reply[1]) - 1][0])
        if outcome == "done":
            summary = _str(reply[2]) if len(reply) > 2 and reply[2] else None
            return TransactReply(outcome, record=reply[1], summary=summary)
        flat = reply[2]
        started = tuple(
            (_str(flat[i]) or None, bool(int(flat[i + 1])), _str(flat[i + 2]) or None)
            for i in range(0, len(flat), 3)
        )
        events = tuple(
            (bool(int(e[0])), [_str(r) for r in e[1]], [_str(r) for r in e[2]]) for e in reply[3]
        )
        made = int(reply[4]) if len(reply) > 4 else 0
        summary = _str(reply[5]) if len(reply) > 5 else None
        return TransactReply(
            outcome,
            cancel=bool(int(reply[1])),
            started=started,
            events=events,
            made=made,
            summary=summary,
        )
