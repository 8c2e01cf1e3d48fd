"""Peer benchmark: stackshift-redis vs arq, saq, rq, taskiq, streaq and bullmq.

    python -m bench.run            # full: every library, 3 repeats, medians, extras
    python -m bench.run --peers    # the same (the peer comparison is the default)
    python -m bench.run --quick    # stackshift-redis only, 2,000 jobs, 1 repeat (< 1 min)
    python -m bench.run --baseline-tree /tmp/ss-main --libs stackshift   # this checkout
                                   # against another tree of the library, alternated

Starts its own redis-server on a free loopback port (no persistence) and kills it at the
end; installs each peer into bench/.venvs/<peer>; runs bench/peers/<lib>_driver.py per
library and mode in a subprocess with a timeout; prints one table and writes it to
bench/results/<date>-full.txt (or -quick.txt). A failing library is reported, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.peers._common import Resp, info
from bench.redis_server import RedisServer
from bench.report import summarize, table
from bench.venvs import BENCH, LIBS, PEERS_DIR, Lib, ensure, python_for

# Workers too slow at their defaults to drain 20,000 jobs in a reasonable time get a
# smaller batch in full mode (per-job metrics are steady-state rates; the n column shows it).
PROCESS_CAP = {"arq": 5000, "rq": 1000, "rq-simple": 3000, "stackshift[steps3]": 5000}


METHOD = textwrap.fill(
    "Method: process = n jobs queued with no worker, then ONE worker process at library "
    "defaults; rate = n / (first job start .. last job end), from timestamps the no-op job "
    "appends to a local file (no Redis traffic). cmds/job = INFO commandstats calls (incl. "
    "inside Lua), RTs/job = total_reads_processed, both without INFO itself; worker CPU = "
    "/proc utime+stime (+reaped children) from just before the first job to the last; redis "
    "CPU = INFO used_cpu_sys+user over the worker's run; B/job = used_memory delta after "
    "queueing n, / n. Per-job logging is off for every library.",
    100,
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_driver(
    lib: Lib, url: str, args: list[str], timeout: float, tree: Path | None = None
) -> dict[str, Any]:
    """Run one driver invocation; always returns a dict (with "error" on failure). `tree`:
    another checkout whose stackshift_redis the driver imports (first on PYTHONPATH)."""
    cmd = [str(python_for(lib)), str(PEERS_DIR / lib.driver), "--redis-url", url, "--flush",
           "--timeout", str(max(30.0, timeout - 60)), *lib.args, *args]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")]).rstrip(":")
    try:
        p = subprocess.run(
            cmd, cwd=PEERS_DIR, capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"driver timed out after {timeout:.0f}s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                break
    tail = " ".join((p.stderr or p.stdout).split())[-400:]
    return {"error": f"driver exit {p.returncode}: {tail}"}


def run_extras(url: str, delayed: int, retry_runs: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.stackshift_extras", "--redis-url", url,
           "--delayed", str(delayed), "--retry-runs", str(retry_runs)]  # fmt: skip
    try:
        p = subprocess.run(cmd, cwd=BENCH.parent, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"extras timed out after {timeout:.0f}s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {"error": f"extras exit {p.returncode}: {' '.join(p.stderr.split())[-400:]}"}


def extras_text(x: dict[str, Any]) -> str:
    out = ["stackshift-redis extras (one run each):"]
    if "error" in x and len(x) == 1:
        return "\n".join([*out, f"  error: {x['error']}"])
    for key in ("retry", "delayed", "promote", "idle_worker"):
        part = x.get(key)
        if part is not None:
            body = ", ".join(f"{k}={_num(v)}" for k, v in part.items())
            out.append(f"  {key}: {body}")
    return "\n".join(out)


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--peers", action="store_true", help="the peer comparison (the default)")
    p.add_argument("--quick", action="store_true", help="stackshift only, 2,000 jobs, 1 repeat")
    p.add_argument(
        "--baseline-tree", type=Path,
        help="another checkout (git worktree) of the library: rows stackshift@base (and "
        "stackshift@base[steps3]) run its code, right after this checkout's, every repeat",
    )  # fmt: skip
    p.add_argument("--libs", help=f"comma list from {','.join(LIBS)} (default: all)")
    p.add_argument("--n", type=int, default=20_000, help="jobs drained per process run")
    p.add_argument("--enqueue-n", type=int, default=5000, help="jobs per enqueue measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=420.0, help="seconds per driver run")
    p.add_argument("--delayed", type=int, default=1_000_000, help="delayed runs for extras")
    p.add_argument("--retry-runs", type=int, default=100, help="runs for the retry extra")
    p.add_argument("--no-extras", action="store_true", help="skip the stackshift-only extras")
    p.add_argument("--no-install", action="store_true", help="use the venvs as they are")
    p.add_argument("--out", type=Path, help="results file (default bench/results/<date>-...)")
    a = p.parse_args()
    if a.quick:
        a.libs = a.libs or "stackshift"
        a.n, a.enqueue_n, a.repeats = 2000, 2000, 1
        a.delayed, a.retry_runs = 20_000, 20
    return a


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else "?"
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def source_rev(tree: Path | None = None) -> str:
    """The repo commit the stackshift numbers come from (+ whether its code was dirty)."""
    root = tree or BENCH.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "stackshift_redis", "lua"],
                               cwd=root, text=True, capture_output=True,
                               timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return f"{rev or 'no commit'}{' + uncommitted changes' if dirty else ''}"


def main() -> int:
    a = parse_args()
    names = [n.strip() for n in (a.libs or ",".join(LIBS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in LIBS]
    if unknown:
        sys.exit(f"unknown libraries: {unknown}; choose from {list(LIBS)}")
    t0 = time.monotonic()
    broken: dict[str, str] = {}
    for name in names:
        lib = LIBS[name]
        if a.no_install and lib.venv is not None:
            if not python_for(lib).exists():
                broken[name] = "venv missing (--no-install)"
            continue
        log(f"checking/installing {name}")
        steps: list[str] = []
        err = ensure(lib, steps)
        if err:
            broken[name] = err
            log(f"{name}: {err}")
    rows = list(names)
    if "stackshift" in names and not a.quick:
        rows.insert(names.index("stackshift") + 1, "stackshift[steps3]")
    if "stackshift" in names and a.baseline_tree is not None:
        at = rows.index("stackshift") + (1 if a.quick else 2)
        rows[at:at] = ["stackshift@base"] + ([] if a.quick else ["stackshift@base[steps3]"])
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in rows}
    extras: dict[str, Any] | None = None
    with RedisServer() as srv:
        redis_version = info(srv.url)["version"]
        log(f"redis-server {redis_version} at {srv.url}")
        for rep in range(a.repeats):
            for row in rows:
                name = "stackshift" if row.startswith("stackshift") else row
                tree = a.baseline_tree if row.startswith("stackshift@base") else None
                if name in broken:
                    runs[row].append({"mode": "process", "error": broken[name]})
                    continue
                lib = LIBS[name]
                cap = PROCESS_CAP.get(row.replace("@base", ""), a.n)
                n = a.n if a.quick else min(a.n, cap)
                steps3 = row.endswith("[steps3]")
                if not steps3:
                    log(f"rep {rep + 1}/{a.repeats} {row}: enqueue x{a.enqueue_n}")
                    enq = ["--mode", "enqueue", "--n", str(a.enqueue_n)]
                    runs[row].append(run_driver(lib, srv.url, enq, a.timeout, tree))
                log(f"rep {rep + 1}/{a.repeats} {row}: process x{n}")
                extra = ["--job", "steps3"] if steps3 else []
                proc = ["--mode", "process", "--n", str(n), *extra]
                res = run_driver(lib, srv.url, proc, a.timeout, tree)
                res.setdefault("mode", "process")
                res.setdefault("n", n)
                runs[row].append(res)
                if "error" in res:
                    log(f"  {row}: {str(res['error'])[:200]}")
        if "stackshift" in names and "stackshift" not in broken and not a.no_extras:
            log(f"stackshift extras: retries x{a.retry_runs}, delayed x{a.delayed}")
            c = Resp(srv.url)
            c.call("FLUSHALL")
            c.close()
            extras = run_extras(srv.url, a.delayed, a.retry_runs, timeout=900)
    notes = {n: LIBS[n].note for n in names}
    notes["stackshift[steps3]"] = "3 memoized ctx.step.run per job"
    if a.baseline_tree is not None:
        base = f"{a.baseline_tree} ({source_rev(a.baseline_tree)})"
        notes["stackshift@base"] = f"the library of {base}"
        notes["stackshift@base[steps3]"] = "the same, 3 memoized ctx.step.run per job"
    text = "\n".join(
        [
            f"stackshift-redis peer benchmark, {date.today()} ({'quick' if a.quick else 'full'})",
            f"machine: {machine()}; redis-server {redis_version} (loopback, no persistence)",
            f"stackshift-redis source: {source_rev()}",
            f"repeats={a.repeats}, enqueue n={a.enqueue_n}, process n={a.n} (capped per row: "
            "see n), bulk chunk=1000, 32 in flight = 32 concurrent lanes (threads for rq)",
            "",
            table(summarize(runs), notes),
            "",
            extras_text(extras) if extras is not None else "extras: not run",
            "",
            METHOD,
            f"wall time: {time.monotonic() - t0:.0f}s",
        ]
    )
    print(text)
    out = a.out or BENCH / "results" / f"{date.today()}-{'quick' if a.quick else 'full'}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
