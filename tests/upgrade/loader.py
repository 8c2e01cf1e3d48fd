"""Upgrade fixtures: dump a namespace to a portable file, load it back under another name.

A fixture is what a release leaves in Redis: every key of one namespace (`ss:{<ns>}:*`),
written by that release's own code (tests/upgrade/releases/<release>/make_fixture.py).
Tests of later releases load it into a fresh namespace and upgrade it.

The dump is plain JSON (`dump.json`, or `dump.json.gz` when large), independent of the
server version: no DUMP/RESTORE payloads (their format differs between Redis 6.2, 7.0 and
Valkey 9). Each key is written with its type, its whole value and its remaining PTTL:

    {"format": "stackshift-fixture/1", "release": "6707af1", "namespace": "fixture",
     "placeholder": "ss:{<ns>}:", "dumped_at_ms": ..., "server": "Redis 7.0.15",
     "keys": [{"key": "ss:{<ns>}:run:...", "type": "hash", "pttl": -1, "value": ...}, ...]}

- Strings (a key name, a value, a hash field, a member) are JSON strings when they are
  valid UTF-8, else `{"b64": "..."}`.
- The namespace prefix `ss:{<namespace>}:` is replaced by the placeholder `ss:{<ns>}:`
  in key names AND inside text values (a run's `idem_key` holds a key name); the loader
  puts the target namespace's prefix back. A binary value holding the prefix is refused
  when dumping (replacing inside it could break its encoding).
- value by type: string: a string; hash: [[field, value], ...]; set: [member, ...];
  list: [item, ...]; zset: [[member, score], ...] with the score as Redis prints it
  ("1733350000123", "inf"); stream: {"entries": [[id, [[field, value], ...]], ...],
  "last_id", "entries_added", "max_deleted_id" (the last two null before Redis 7.0),
  "groups": [{"name", "last_delivered_id", "entries_read", "consumers": [name, ...],
  "pending": [...]}]}.
- `pttl`: the key's remaining time to live in ms at the dump (-1: none). The loader sets
  the same remaining TTL; absolute times stored in values (due times, lease expiries,
  scores) are left as they are, so they lie in the past when the fixture is loaded later:
  delayed runs, timers and retries are simply due, leases simply expired.

`load_fixture(redis, release, namespace)` works with `redis.asyncio.Redis` and
`redis.asyncio.cluster.RedisCluster` (every key of a namespace carries its hash tag: one
slot) on Redis 6.2, 7.0 and Valkey 9; streams are rebuilt with XADD (explicit ids),
XSETID, XGROUP CREATE (ENTRIESREAD when the server has it) and XGROUP CREATECONSUMER.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.exceptions import ResponseError

FORMAT = "stackshift-fixture/1"
PLACEHOLDER = "ss:{<ns>}:"
RELEASES = Path(__file__).resolve().parent / "releases"
NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_TMP_GROUP = "__fixture_loader__"
Text = str | dict[str, str]


def prefix_of(namespace: str) -> str:
    """The key prefix of a namespace in the layout of the releases that made fixtures."""
    if not NAME_RE.match(namespace):
        raise ValueError(f"invalid namespace {namespace!r}")
    return f"ss:{{{namespace}}}:"


# -- encoding ---------------------------------------------------------------------------------
def _b(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (int, float)):
        return str(value).encode()
    raise TypeError(f"unexpected reply {value!r}")


def encode(value: Any, prefix: str) -> Text:
    """A reply (bytes) as JSON text, the namespace prefix replaced by the placeholder."""
    raw = _b(value)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        if prefix.encode() in raw:
            raise ValueError(f"binary value holds the prefix {prefix!r}: {raw[:80]!r}") from None
        return {"b64": base64.b64encode(raw).decode()}
    return text.replace(prefix, PLACEHOLDER)


def decode(value: Text, prefix: str) -> bytes:
    """The bytes to write for a dumped value, the placeholder replaced by `prefix`."""
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value.replace(PLACEHOLDER, prefix).encode()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info(reply: Any) -> dict[str, Any]:
    """An XINFO reply (a dict, or a flat list under RESP2 without a parser) with str keys."""
    if isinstance(reply, dict):
        return {_s(k): v for k, v in reply.items()}
    items = list(reply)
    return {_s(items[i]): items[i + 1] for i in range(0, len(items), 2)}


def _one(reply: Any) -> Any:
    """A node-level reply; RedisCluster answers {node: reply} when it asks several nodes."""
    per_node = (
        isinstance(reply, dict)
        and reply
        and all(isinstance(v, (dict, tuple, list)) for v in reply.values())
        and not any(k in reply for k in ("redis_version", "valkey_version"))
    )
    return next(iter(reply.values())) if per_node else reply


def _id(value: Any) -> str | None:
    return None if value is None else _s(value)


# -- dumping ----------------------------------------------------------------------------------
async def dump_namespace(redis: Any, namespace: str) -> dict[str, Any]:
    """Every key of `namespace` (SCAN MATCH on its prefix) as the portable dump (a dict)."""
    prefix = prefix_of(namespace)
    names = sorted({_b(k) async for k in redis.scan_iter(match=prefix + "*", count=1000)})
    secs, micros = _one(await redis.time())
    info = _one(await redis.info("server"))
    product = "Valkey" if "valkey_version" in info else "Redis"
    version = info.get("valkey_version") or info.get("redis_version")
    keys: list[dict[str, Any]] = []
    for name in names:
        entry = await _dump_key(redis, name, prefix)
        if entry is not None:
            keys.append(entry)
    return {
        "format": FORMAT,
        "namespace": namespace,
        "placeholder": PLACEHOLDER,
        "dumped_at_ms": int(secs) * 1000 + int(micros) // 1000,
        "server": f"{product} {_s(version)}",
        "keys": keys,
    }


async def _dump_key(redis: Any, name: bytes, prefix: str) -> dict[str, Any] | None:
    kind = _s(await redis.type(name))
    pttl = int(await redis.pttl(name))
    if kind == "none":  # expired between SCAN and now
        return None
    e = lambda v: encode(v, prefix)  # noqa: E731
    value: Any
    if kind == "string":
        value = e(await redis.get(name))
    elif kind == "hash":
        h = await redis.hgetall(name)
        value = [[e(f), e(v)] for f, v in sorted(h.items())]
    elif kind == "set":
        value = [e(m) for m in sorted(await redis.smembers(name))]
    elif kind == "list":
        value = [e(i) for i in await redis.lrange(name, 0, -1)]
    elif kind == "zset":
        pairs = await redis.zrange(name, 0, -1, withscores=True, score_cast_func=_score)
        value = [[e(m), s] for m, s in pairs]
    elif kind == "stream":
        value = await _dump_stream(redis, name, e)
    else:
        raise ValueError(f"key {name!r}: type {kind} is not supported")
    return {"key": e(name), "type": kind, "pttl": pttl, "value": value}


def _score(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode()
    if isinstance(raw, float):
        return "inf" if raw == float("inf") else "-inf" if raw == float("-inf") else repr(raw)
    return str(raw)


async def _dump_stream(redis: Any, name: bytes, e: Any) -> dict[str, Any]:
    entries = await redis.xrange(name, "-", "+")
    info = _info(await redis.xinfo_stream(name))
    groups: list[dict[str, Any]] = []
    for g in await redis.xinfo_groups(name):
        g = _info(g)
        gname = g["name"]
        consumers = [_info(c) for c in await redis.xinfo_consumers(name, gname)]
        pending: list[Any] = []
        if int(g.get("pending") or 0):
            rows = await redis.xpending_range(name, gname, "-", "+", 10_000)
            pending = [
                {"id": _s(p["message_id"]), "consumer": e(p["consumer"]),
                 "deliveries": int(p["times_delivered"])}
                for p in rows
            ]  # fmt: skip
        groups.append({
            "name": e(gname),
            "last_delivered_id": _s(g["last-delivered-id"]),
            "entries_read": None if g.get("entries-read") is None else int(g["entries-read"]),
            "consumers": sorted(e(c["name"]) for c in consumers),
            "pending": pending,
        })  # fmt: skip
    return {
        "entries": [[_s(i), [[e(f), e(v)] for f, v in fields.items()]] for i, fields in entries],
        "last_id": _s(info["last-generated-id"]),
        "entries_added": None if info.get("entries-added") is None else int(info["entries-added"]),
        "max_deleted_id": _id(info.get("max-deleted-entry-id")),
        "groups": groups,
    }


def write_dump(dump: dict[str, Any], directory: Path, gzip_over: int = 500_000) -> Path:
    """Write `dump.json` (one key per line), or `dump.json.gz` when it is over `gzip_over`
    bytes; remove the other form. Returns the path written."""
    head = {k: v for k, v in dump.items() if k != "keys"}
    lines = [json.dumps(k, sort_keys=True, ensure_ascii=False) for k in dump["keys"]]
    body = json.dumps(head, sort_keys=True, indent=1, ensure_ascii=False)[:-2]
    text = body + ',\n "keys": [\n' + ",\n".join(lines) + "\n ]\n}\n"
    json.loads(text)  # the hand-made layout is valid JSON
    plain, packed = directory / "dump.json", directory / "dump.json.gz"
    data = text.encode()
    if len(data) > gzip_over:
        packed.write_bytes(gzip.compress(data, mtime=0))
        plain.unlink(missing_ok=True)
        return packed
    plain.write_bytes(data)
    packed.unlink(missing_ok=True)
    return plain


def read_dump(release: str, releases: Path = RELEASES) -> dict[str, Any]:
    """The dump of `release` (dump.json or dump.json.gz)."""
    d = releases / release
    if (d / "dump.json").exists():
        data = (d / "dump.json").read_bytes()
    elif (d / "dump.json.gz").exists():
        data = gzip.decompress((d / "dump.json.gz").read_bytes())
    else:
        raise FileNotFoundError(f"no dump.json(.gz) in {d}")
    dump: dict[str, Any] = json.loads(data)
    if dump.get("format") != FORMAT:
        raise ValueError(f"{d}: format {dump.get('format')!r}, expected {FORMAT!r}")
    return dump


# -- loading ----------------------------------------------------------------------------------
@dataclass
class Manifest:
    """What a fixture holds and what a test must do to finish it (manifest.json), for the
    namespace it was loaded into."""

    release: str
    namespace: str
    dumped_at_ms: int
    keys_loaded: int
    data: dict[str, Any] = field(repr=False)

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        """run id -> {name, job, status (at the dump), action, final, ...}."""
        runs: dict[str, dict[str, Any]] = self.data["runs"]
        return runs

    @property
    def actions(self) -> list[dict[str, Any]]:
        """What a test does after loading, in order (send_event, resume_queue, ...)."""
        actions: list[dict[str, Any]] = self.data["actions"]
        return actions

    @property
    def counters(self) -> dict[str, dict[str, int]]:
        """state counter -> {"dump": value at the dump, "final": value once every run ended}."""
        counters: dict[str, dict[str, int]] = self.data["counters"]
        return counters

    def run_id(self, name: str) -> str:
        """The id of the run the manifest calls `name` (e.g. "K1")."""
        for run_id, run in self.runs.items():
            if run["name"] == name:
                return run_id
        raise KeyError(name)


def read_manifest(release: str, releases: Path = RELEASES) -> dict[str, Any]:
    """manifest.json of `release`."""
    data: dict[str, Any] = json.loads((releases / release / "manifest.json").read_text())
    return data


async def load_fixture(
    redis: Any, release: str, namespace: str, *, releases: Path = RELEASES
) -> Manifest:
    """Write the dump of `release` into `namespace` (which must hold no key) with every
    key's type, value and remaining TTL; return the release's manifest."""
    dump = read_dump(release, releases)
    prefix = prefix_of(namespace)
    async for _ in redis.scan_iter(match=prefix + "*", count=1000):
        raise ValueError(f"namespace {namespace!r} is not empty")
    for entry in dump["keys"]:
        await _load_key(redis, entry, prefix)
    return Manifest(
        release=release,
        namespace=namespace,
        dumped_at_ms=dump["dumped_at_ms"],
        keys_loaded=len(dump["keys"]),
        data=read_manifest(release, releases),
    )


async def _load_key(redis: Any, entry: dict[str, Any], prefix: str) -> None:
    d = lambda v: decode(v, prefix)  # noqa: E731
    key, kind, value = d(entry["key"]), entry["type"], entry["value"]
    if kind == "string":
        await redis.set(key, d(value))
    elif kind == "hash":
        for lo in range(0, len(value), 500):
            await redis.hset(key, mapping={d(f): d(v) for f, v in value[lo : lo + 500]})
    elif kind == "set":
        for lo in range(0, len(value), 500):
            await redis.sadd(key, *[d(m) for m in value[lo : lo + 500]])
    elif kind == "list":
        for lo in range(0, len(value), 500):
            await redis.rpush(key, *[d(i) for i in value[lo : lo + 500]])
    elif kind == "zset":
        for lo in range(0, len(value), 500):
            await redis.zadd(key, {d(m): s for m, s in value[lo : lo + 500]})
    elif kind == "stream":
        await _load_stream(redis, key, value, d)
    else:
        raise ValueError(f"key {entry['key']!r}: type {kind} is not supported")
    if entry["pttl"] > 0:
        await redis.pexpire(key, entry["pttl"])


async def _load_stream(redis: Any, key: bytes, value: dict[str, Any], d: Any) -> None:
    for entry_id, fields in value["entries"]:
        pairs = [x for f, v in fields for x in (d(f), d(v))]
        await redis.execute_command("XADD", key, entry_id, *pairs)
    if not value["entries"]:  # an empty stream: create it through a throwaway group
        await redis.xgroup_create(key, _TMP_GROUP, id="0-0", mkstream=True)
        await redis.xgroup_destroy(key, _TMP_GROUP)
    last = value["last_id"]
    extra: list[Any] = []
    if value.get("entries_added") is not None and value.get("max_deleted_id") is not None:
        extra = ["ENTRIESADDED", value["entries_added"], "MAXDELETEDID", value["max_deleted_id"]]
    if last != "0-0":
        await _with_fallback(redis, ["XSETID", key, last], extra)
    for g in value["groups"]:
        name = d(g["name"])
        read = g.get("entries_read")
        await _with_fallback(
            redis, ["XGROUP", "CREATE", key, name, g["last_delivered_id"]],
            ["ENTRIESREAD", read] if read is not None else [],
        )  # fmt: skip
        for consumer in g["consumers"]:
            await redis.xgroup_createconsumer(key, name, d(consumer))
        if g.get("pending"):  # tickets are read with NOACK: no release so far left any
            raise ValueError(f"stream {key!r} group {name!r}: pending entries are not loaded")


async def _with_fallback(redis: Any, command: list[Any], extra: list[Any]) -> None:
    """Send `command + extra`; when the server refuses the options in `extra` (Redis 6.2
    has no ENTRIESREAD, ENTRIESADDED, MAXDELETEDID: "syntax error", "wrong number of
    arguments"), send `command` alone."""
    if extra:
        try:
            await redis.execute_command(*command, *extra)
            return
        except ResponseError:
            pass  # the plain form below raises if the command itself is wrong
    await redis.execute_command(*command)
