"""Job definitions in Redis: what workers publish, and how every caller applies it.

A worker publishes, when it starts, the definition of each job it registers (the highest
version's rules) in `keys.defs()` (lua/publish_defs.lua): field `<job>` is the JSON below,
`q|<job>` its queue, `p|<job>` its key-less plan (what a failure-handler start, made inside
a script, can apply), `v|<job>` its highest version, and `#rev` a counter bumped whenever
any definition changes. Callers cache the whole hash with its revision (`Definitions`) and
resolve each run's flow-control plan from it (flow.py); the scripts that create runs check
the revision the caller used (lua/lib/defs_rev.lua, one HGET) and answer `STALE` when it
changed: the caller refetches once and sends again. So a start costs one HGET more, and a
definition change costs each caller one HGETALL.

A rule key that is a callable cannot travel: it is published as {"callable": "<module.name>"}.
A caller that registers the job itself evaluates its own callable; any other caller gets
InvalidArgumentError naming the job (loud, never a silently weaker rule): rules that must
hold for other services use dotted paths.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError
from .flow import (
    CancelOn,
    Concurrency,
    Debounce,
    Flow,
    Key,
    MatchKeyFn,
    RateLimit,
    Singleton,
    Throttle,
)
from .jobs import JobDef
from .scripts import redis_call

log = logging.getLogger("stackshift.client")
REV = "#rev"


def _key_out(key: Key) -> Any:
    if key is None or isinstance(key, str):
        return key
    return {"callable": f"{getattr(key, '__module__', '?')}.{getattr(key, '__qualname__', '?')}"}


def _secs(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)


def flow_out(flow: Flow) -> dict[str, Any]:
    """A Flow as JSON-able data (callable keys named, not evaluated)."""
    out: dict[str, Any] = {}
    if flow.concurrency:
        out["concurrency"] = [{"limit": c.limit, "key": _key_out(c.key)} for c in flow.concurrency]
    if (t := flow.throttle) is not None:
        out["throttle"] = {
            "limit": t.limit,
            "period": _secs(t.period),
            "key": _key_out(t.key),
            "burst": t.burst,
        }
    if (r := flow.rate_limit) is not None:
        out["rate_limit"] = {"limit": r.limit, "period": _secs(r.period), "key": _key_out(r.key)}
    if (d := flow.debounce) is not None:
        out["debounce"] = {
            "period": _secs(d.period),
            "key": _key_out(d.key),
            "timeout": _secs(d.timeout),
        }
    if (s := flow.singleton) is not None:
        out["singleton"] = {"key": _key_out(s.key), "mode": s.mode}
    if flow.cancel_on:
        out["cancel_on"] = [
            {"event": c.event, "match": c.match, "timeout": _secs(c.timeout)}
            for c in flow.cancel_on
        ]
    return out


def _callable_key(job: str, name: str) -> Callable[[Any], str]:
    def refuse(_payload: Any) -> str:
        raise InvalidArgumentError(
            f"job {job!r}: its rule key is the callable {name} and this process does not "
            "register the job; give the rule a dotted payload path so that every caller "
            "can apply it"
        )

    return refuse


def flow_in(job: str, data: Mapping[str, Any]) -> Flow:
    """The Flow of a published definition (a callable key refuses to evaluate)."""

    def key(k: Any) -> Key:
        if isinstance(k, Mapping):
            return _callable_key(job, str(k.get("callable")))
        return str(k) if isinstance(k, str) else None

    conc = tuple(Concurrency(c["limit"], key(c["key"])) for c in data.get("concurrency", ()))
    t = data.get("throttle")
    r = data.get("rate_limit")
    d = data.get("debounce")
    s = data.get("singleton")
    return Flow(
        concurrency=conc,
        throttle=Throttle(t["limit"], t["period"], key(t["key"]), t["burst"]) if t else None,
        rate_limit=RateLimit(r["limit"], r["period"], key(r["key"])) if r else None,
        debounce=Debounce(d["period"], key(d["key"]), d["timeout"]) if d else None,
        singleton=Singleton(key(s["key"]), s["mode"]) if s else None,
        cancel_on=tuple(
            CancelOn(c["event"], c["match"], c["timeout"]) for c in data.get("cancel_on", ())
        ),
    )


def has_callable_key(data: Mapping[str, Any]) -> bool:
    """True when a published flow has a rule keyed by a callable."""
    return "callable" in json.dumps(data) and any(
        isinstance(v, Mapping) and "callable" in v for v in _keys(data)
    )


def _keys(data: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = [c.get("key") for c in data.get("concurrency", ())]
    out += [
        data[r].get("key") for r in ("throttle", "rate_limit", "debounce", "singleton") if r in data
    ]
    return out


def describe(jd: JobDef, versions: list[int]) -> dict[str, Any]:
    """The published definition of a job (its highest version `jd`)."""
    return {
        "queue": jd.queue,
        "retries": jd.retries,
        "backoff": jd.backoff_kind,
        "timeout": jd.timeout,
        "priority": jd.priority,
        "idempotency_ttl": jd.idempotency_ttl,
        "on_event": jd.on_event,
        "on_failure": jd.on_failure,
        "cron": jd.cron,
        "timezone": jd.timezone,
        "flow": flow_out(jd.flow),
        "versions": sorted(versions),
    }


def static_plan(jd: JobDef) -> str:
    """The plan fields a script can apply without a payload: the group and slots of the
    key-less Concurrency rules, and the priority ('' when none)."""
    conc = [c for c in jd.flow.concurrency if c.key is None]
    out: dict[str, Any] = {"p": jd.priority} if jd.priority else {}
    if conc:
        ids = [f"{i}:*" for i in range(len(conc))]
        out["g"] = jd.name + "/" + "/".join(ids)
        out["s"] = [[sid, c.limit] for sid, c in zip(ids, conc, strict=True)]
    return json.dumps(out, separators=(",", ":")) if out else ""


@dataclass(frozen=True)
class Rules:
    """The rules a caller applies to a new run of one job."""

    job: str
    queue: str
    priority: int
    flow: Flow
    idempotency_ttl: float | None
    published: bool
    max_version: int = 1

    def plan(self, payload: Any, match_key: MatchKeyFn, priority: int = 0) -> str:
        """The run's plan JSON for the scripts (flow.Flow.plan)."""
        return self.flow.plan(self.job, payload, match_key, priority)


def rules_of(job: str, data: Mapping[str, Any], local: JobDef | None) -> Rules:
    """The Rules of a published definition (a local definition evaluates callable keys)."""
    flow_data = data.get("flow") or {}
    if local is not None and has_callable_key(flow_data):
        flow = local.flow
    else:
        flow = flow_in(job, flow_data)
    versions = data.get("versions") or [1]
    return Rules(
        job=job,
        queue=data["queue"],
        priority=int(data.get("priority") or 0),
        flow=flow,
        idempotency_ttl=data.get("idempotency_ttl"),
        published=True,
        max_version=max(versions),
    )


def local_rules(jd: JobDef) -> Rules:
    """The Rules of a local definition (no worker published the job yet)."""
    return Rules(jd.name, jd.queue, jd.priority, jd.flow, jd.idempotency_ttl, False, jd.version)


@dataclass
class Definitions:
    """One process's cache of the published definitions (refreshed on STALE)."""

    ns: Any  # Namespace (importing it here is a cycle)
    rev: str | None = None
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)
    _loading: asyncio.Future[str] | None = None

    @redis_call
    async def load(self, force: bool = False) -> str:
        """The revision of the cached definitions: one HGETALL when none is cached or
        `force`, shared by the callers that ask meanwhile (no herd of reloads)."""
        if self.rev is not None and not force:
            return self.rev
        task = self._loading
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self._fetch(force))
            self._loading = task
        return await task

    async def mirror(self, raw: dict[bytes, bytes] | None = None) -> None:
        """With partitions (P > 1): copy the namespace's definitions (`raw`, else read now)
        into each partition's copy that is older (lua/mirror_defs.lua). A worker does it
        after publishing; a caller whose start met a lagging copy (STALE) on reload."""
        ns = self.ns
        if ns.partitions == 1:
            return
        if raw is None:
            raw = await ns.redis.hgetall(ns.keys.defs())
        rev = raw.get(REV.encode(), b"0").decode()
        flat = [x.decode() for kv in raw.items() for x in kv]
        await asyncio.gather(
            *(ns.part_scripts(p).mirror_defs(rev, flat) for p in range(ns.partitions))
        )

    async def _fetch(self, force: bool = False) -> str:
        raw = await self.ns.redis.hgetall(self.ns.keys.defs())
        if force:
            await self.mirror(raw)
        data: dict[str, dict[str, Any]] = {}
        rev = "0"
        for k, v in raw.items():
            name = k.decode()
            if name == REV:
                rev = v.decode()
            elif "|" not in name:  # q|<job>, p|<job>, v|<job>: for the scripts
                try:
                    data[name] = json.loads(v)
                except ValueError:
                    continue
        self.data, self.rev = data, rev
        return rev

    def clear(self) -> None:
        """Forget the cache (the next load reads Redis)."""
        self.rev = None
        self.data = {}

    def rules(self, job: str) -> Rules | None:
        """The rules of `job`: published, else local, else None (wave 1's rule applies)."""
        local = self.ns.registry.jobs.get(job)
        data = self.data.get(job)
        if data is not None:
            return rules_of(job, data, local)
        if local is not None:
            self.warn(job, "uses this process's local definition")
            return local_rules(local)
        return None

    def warn(self, job: str, what: str) -> None:
        """One warning per job per process: no worker published the job."""
        if job in self.warned:
            return
        self.warned.add(job)
        log.warning(
            "job %r: no worker has published its definition yet; this start %s "
            "(rules apply for every caller once a worker that registers the job starts)",
            job,
            what,
        )

    def triggered(self, event: str) -> dict[str, Rules]:
        """Rules of every job published or registered here with on_event == `event`."""
        out: dict[str, Rules] = {}
        for job, data in self.data.items():
            if data.get("on_event") == event:
                out[job] = rules_of(job, data, self.ns.registry.jobs.get(job))
        for jd in self.ns.registry.jobs.values():
            if jd.on_event == event and jd.name not in out:
                out[jd.name] = local_rules(jd)
        return out
