"""Fixed workloads whose Redis cost is counted by tests/test_cost_budgets.py (and printed by
`python tests/cost_workloads.py`, which measures them on a server of its own).

Everything is sequential, so the commands a workload sends do not depend on timing: runs
are started one `start()` at a time, and processed by the worker's own parts (take path
and executor, as `TestEnv` drives them) in takes of `BATCH`, each outcome recorded by one
script call. Counted: INFO commandstats (every command, those called inside scripts
included), less the bookkeeping of the measurement itself; bytes: INFO used_memory.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stackshift_redis import RunContext, StackShift
from stackshift_redis._client.state import State
from stackshift_redis._core.scripts import ScriptCall
from stackshift_redis._worker.attempts import Executor
from stackshift_redis._worker.dispatch import Dispatcher
from stackshift_redis._worker.registration import Registration

BATCH = 100
IGNORED = ("info", "cluster", "command", "ping", "client", "hello", "select", "config")


@dataclass
class Cost:
    """Commands by name and the used_memory change of one measured phase."""

    commands: dict[str, int]
    memory: int

    @property
    def total(self) -> int:
        return sum(self.commands.values())


def build_app(client: Any, namespace: str) -> StackShift:
    """An app with the workloads' jobs: `noop` and `three` (three memoized steps)."""
    app = StackShift(redis=client, namespace=namespace)

    @app.job("noop")
    async def noop(ctx: RunContext) -> None:
        return None

    async def nothing() -> int:
        return 1

    @app.job("three")
    async def three(ctx: RunContext) -> int:
        total = 0
        for name in ("a", "b", "c"):
            total += await ctx.step.run(name, nothing)
        return total

    return app


async def _stats(nodes: list[Any]) -> tuple[dict[str, int], int]:
    calls: dict[str, int] = {}
    memory = 0
    for node in nodes:
        info = await node.info("commandstats")
        for key, value in info.items():
            name = key.removeprefix("cmdstat_").lower()
            if not name.startswith(IGNORED):
                calls[name] = calls.get(name, 0) + int(value["calls"])
        memory += int((await node.info("memory"))["used_memory"])
    return calls, memory


class Meter:
    """INFO deltas over every server process (one, or each cluster node)."""

    def __init__(self, nodes: list[Any]) -> None:
        self.nodes = nodes

    async def measure(self, work: Any) -> Cost:
        before, mem0 = await _stats(self.nodes)
        await work
        after, mem1 = await _stats(self.nodes)
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        return Cost(delta, mem1 - mem0)


class Driver:
    """Starts runs one at a time and processes them with the worker's parts, in order."""

    def __init__(self, app: StackShift) -> None:
        self.app = app
        self.ns = app._core
        self.registration = Registration(self.ns, "cost-meter", ["default"])
        conf = self.registration.conf
        self.dispatcher = Dispatcher(self.ns, ["default"], "cost-meter", conf)
        self.executor: Executor | None = None

    async def setup(self) -> None:
        await self.registration.setup()
        self.executor = Executor(
            self.ns,
            State(self.ns),
            asyncio.get_running_loop(),
            finish=self._finish,
            conf=self.registration.conf,
            resources={},
        )

    async def _finish(self, call: ScriptCall) -> object:
        try:
            [reply] = await self.ns.scripts.run_batch([call])
        except Exception as exc:  # recorded as the worker records it
            return exc
        return reply

    async def start(self, job: str, n: int) -> None:
        for i in range(n):
            await self.app.start(job, {"i": i})

    async def process(self, n: int) -> None:
        assert self.executor is not None
        done = 0
        while done < n:
            reply = await self.dispatcher.take(min(BATCH, n - done))
            assert reply.taken, f"only {done} of {n} runs were ready"
            for run in reply.taken:
                await self.executor.run(self.executor.build(run, 0.0))
            done += len(reply.taken)


async def measure_all(client: Any, nodes: list[Any], namespace: str, n: int) -> dict[str, Cost]:
    """Cost of: n no-op starts (queued), processing them, and n 3-step runs start->complete."""
    app = build_app(client, namespace)
    meter = Meter(nodes)
    driver = Driver(app)
    try:
        await driver.setup()
        for job in ("noop", "three"):  # warm up: scripts loaded, keys and groups exist
            await driver.start(job, 1)
            await driver.process(1)
        out = {"queued": await meter.measure(driver.start("noop", n))}
        out["processed"] = await meter.measure(driver.process(n))

        async def three() -> None:
            await driver.start("three", n)
            await driver.process(n)

        out["three_step"] = await meter.measure(three())
        return out
    finally:
        await app.close()


def report(costs: dict[str, Cost], n: int) -> str:
    lines = []
    for name, c in costs.items():
        mix = ", ".join(
            f"{k} {v / n:.2f}" for k, v in sorted(c.commands.items(), key=lambda x: -x[1])
        )
        lines.append(
            f"{name:10} {c.total / n:7.2f} commands/run {c.memory / n:8.1f} bytes/run  [{mix}]"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import redis.asyncio as aioredis
    from redis_procs import start_server

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000

    async def main() -> None:
        with start_server() as server:
            client = aioredis.Redis(port=server.port)
            try:
                print(report(await measure_all(client, [client], "cost", count), count))
            finally:
                await client.aclose()

    asyncio.run(main())
