"""The cost of observability hooks on the worker's hot path: the stackshift driver's
`process` mode (n runs queued, then one worker process drains them) with no hook, with
the tracing hook (OpenTelemetry SDK provider recording spans, exporting none; and the
API's no-op tracer) and with the metrics hook. Prints per mode the median jobs/s and worker
CPU µs per job (the steadier number on a shared machine), relative to no hook.

    python -m bench.observability_bench [--n 3000] [--repeats 3] [--job noop|steps3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.redis_server import RedisServer

DRIVER = Path(__file__).resolve().parent / "peers" / "stackshift_driver.py"
MODES = ["none", "tracing-api", "tracing", "metrics"]


def once(url: str, n: int, job: str, mode: str) -> tuple[float, float]:
    env = {**os.environ, "STACKSHIFT_BENCH_HOOKS": "" if mode == "none" else mode}
    out = subprocess.run(
        [sys.executable, str(DRIVER), "--mode", "process", "--n", str(n), "--redis-url", url,
         "--job", job],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    res = json.loads(out.strip().splitlines()[-1])
    if "error" in res:
        raise SystemExit(f"{mode}: {res['error']}")
    return float(res["proc_rate"]), float(res["worker_cpu_us"])


def _calls(client: Any) -> dict[str, int]:
    stats = client.info("commandstats")
    return {k: int(v["calls"]) for k, v in stats.items()}


def scrape_cost(url: str, queues: int) -> str:
    """Redis commands and round trips of one scrape of the queue gauges."""
    import redis
    from prometheus_client import CollectorRegistry, generate_latest

    from stackshift_redis import StackShift
    from stackshift_redis.metrics import register

    app = StackShift(redis_url=url, namespace=f"scrape{queues}")
    for i in range(queues):
        app.job(f"job{i}", lambda ctx: None, queue=f"q{i}")
    registry = CollectorRegistry()
    register(app, registry)
    generate_latest(registry)  # loads the script, opens the connection
    client = redis.Redis.from_url(url)
    before = _calls(client)
    generate_latest(registry)
    after = _calls(client)
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    delta["cmdstat_info"] = delta.get("cmdstat_info", 0) - 1  # our own INFO call
    delta = {k.removeprefix("cmdstat_"): v for k, v in delta.items() if v}
    client.close()
    trips = delta.get("evalsha", 0)
    inner = sum(v for k, v in delta.items() if k != "evalsha")
    return f"{queues} queues: {trips} round trip(s), {inner} commands inside: {delta}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--job", default="noop", choices=["noop", "steps3"])
    p.add_argument("--scrape-only", action="store_true", help="only the scrape cost")
    a = p.parse_args()
    if a.scrape_only:
        with RedisServer() as srv:
            for q in (1, 10):
                print(scrape_cost(srv.url, q))
        return
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    cpus: dict[str, list[float]] = {m: [] for m in MODES}
    with RedisServer() as srv:
        for _ in range(a.repeats):
            for mode in MODES:  # interleaved, so drift hits every mode alike
                rate, cpu = once(srv.url, a.n, a.job, mode)
                rates[mode].append(rate)
                cpus[mode].append(cpu)
    base, base_cpu = statistics.median(rates["none"]), statistics.median(cpus["none"])
    print(f"job={a.job} n={a.n} repeats={a.repeats}; one worker process; medians")
    print(f"  {'hooks':<12} {'jobs/s':>8} {'vs none':>8} {'cpu us/job':>11} {'vs none':>8}")
    for mode in MODES:
        rate, cpu = statistics.median(rates[mode]), statistics.median(cpus[mode])
        print(f"  {mode:<12} {rate:8.0f} {rate / base:8.1%} {cpu:11.1f} {cpu / base_cpu:8.1%}")
    with RedisServer() as srv:
        print("one scrape of the queue gauges (INFO commandstats):")
        for q in (1, 10):
            print("  " + scrape_cost(srv.url, q))


if __name__ == "__main__":
    main()
