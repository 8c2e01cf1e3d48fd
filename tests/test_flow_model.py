"""Model-based test of per-key concurrency (Hypothesis state machine over the Lua scripts).

A job with two Concurrency entries (2 per key, 3 for the whole job) gets random sequences
of starts, takes, completions, failures (retry or final), sleeps and wake-ups, lease
expiries and cancels against real Redis. After every step: no key and not the job ever
has more running runs than its limit; each slot's holders are exactly the running runs
(no slot leaks); a take that comes back short left no queued run that could start (no key
stays blocked); and the queue counters (ready, scheduled, waiting) match.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from stackshift_redis import Concurrency, StackShift
from stackshift_redis._core.scripts import FailRequest, SleepRequest

ERR = json.dumps({"type": "E", "message": "m", "traceback": ""})
KEYS = ("a", "b", "c")
PER_KEY, PER_JOB = 2, 3


def make_machine(redis_url: str, is_cluster: bool) -> type[RuleBasedStateMachine]:
    class FlowModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.naps = 0
            self.loop = asyncio.new_event_loop()
            ns = f"m{uuid.uuid4().hex[:10]}"
            if is_cluster:
                from redis.asyncio.cluster import RedisCluster

                host, port = redis_url.split("//")[1].split("/")[0].split(":")
                client: Any = RedisCluster(host=host, port=int(port))
                self.app = StackShift(redis=client, namespace=ns)
            else:
                self.app = StackShift(redis_url, namespace=ns)
            self.app.job(
                "job", lambda ctx: None, queue="q",
                concurrency=[Concurrency(PER_KEY, key="k"), Concurrency(PER_JOB)],
            )  # fmt: skip
            self.s = self.app._core.scripts
            self.k = self.app._core.keys
            self.status: dict[str, str] = {}
            self.key: dict[str, str] = {}
            self.tokens: dict[str, str] = {}
            self.flagged: set[str] = set()

        def do(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            self.do(self.app.close())
            self.loop.close()

        def _in(self, *statuses: str) -> list[str]:
            return sorted(r for r, s in self.status.items() if s in statuses)

        def _running(self, key: str | None = None) -> set[str]:
            return {r for r in self._in("running") if key is None or self.key[r] == key}

        @rule(key=st.sampled_from(KEYS), n=st.integers(1, 3))
        def start(self, key: str, n: int) -> None:
            runs = self.do(self.app.start_many("job", [{"k": key}] * n))
            for r in runs:
                self.status[r.id], self.key[r.id] = "queued", key

        @rule(n=st.integers(1, 6))
        def take(self, n: int) -> None:
            reply = self.do(
                self.s.take([("q", 60_000)], n, max_deliveries=100, retention_ms=60_000)
            )
            for t in reply.taken:
                assert self.status[t.run_id] == "queued", t.run_id
                self.status[t.run_id] = "running"
                self.tokens[t.run_id] = t.token
            if len(reply.taken) < n:  # nothing that could start was left behind
                for r in self._in("queued"):
                    key_full = len(self._running(self.key[r])) >= PER_KEY
                    assert key_full or len(self._running()) >= PER_JOB, (r, self.status)

        def _pick(self, data: st.DataObject, *statuses: str) -> str | None:
            runs = self._in(*statuses)
            return data.draw(st.sampled_from(runs)) if runs else None

        @rule(data=st.data())
        def complete(self, data: st.DataObject) -> None:
            if (r := self._pick(data, "running")) is not None:
                call = self.s.complete_call(r, self.tokens[r], b"\xc0", 60_000)
                assert self.do(self.s.run_batch([call])) == [1]
                self.status[r] = "completed"

        @rule(data=st.data(), retry=st.booleans())
        def fail(self, data: st.DataObject, retry: bool) -> None:
            if (r := self._pick(data, "running")) is not None:
                outcome = "retry" if retry else "failed"
                call = self.s.fail_call(
                    FailRequest(
                        run_id=r,
                        token=self.tokens[r],
                        error_json=ERR,
                        outcome=outcome,
                        retention_ms=60_000,
                    )
                )
                self.do(self.s.run_batch([call]))
                self.status[r] = "scheduled" if retry else "failed"

        @rule(data=st.data())
        def sleep(self, data: st.DataObject) -> None:
            if (r := self._pick(data, "running")) is not None:
                self.naps += 1  # a new step each time: a settled one would return at once
                nap = f"nap{self.naps}"
                nap_request = SleepRequest(
                    run_id=r,
                    token=self.tokens[r],
                    step=nap,
                    rel_ms=60_000,
                    until_ms=-1,
                    record=b"\xc0",
                    park=True,
                )
                reply = self.do(self.s.sleep(nap_request))
                if r in self.flagged:  # a cancel is pending: the run is not parked
                    assert reply.outcome == "cancel"
                    return
                assert reply.parked
                self.status[r] = "waiting"

        @rule()
        def wake_all(self) -> None:
            for r in self._in("waiting", "scheduled"):  # every timer is due now
                self.do(self.app.redis.zadd(self.k.delayed("q"), {r: 1}))
            self.do(self.s.promote("q"))
            for r in self._in("waiting", "scheduled"):
                self.status[r] = "queued"

        @rule(data=st.data())
        def lease_expires(self, data: st.DataObject) -> None:
            if (r := self._pick(data, "running")) is not None:
                self.do(self.app.redis.zadd(self.k.leases("q"), {r: 1}))
                recovered = self.do(self.s.reclaim("q", 60_000))
                assert (r in recovered) != (r in self.flagged)
                self.status[r] = "queued" if r in recovered else "cancelled"

        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            if (r := self._pick(data, "queued", "scheduled", "waiting", "running")) is not None:
                assert self.do(self.app.cancel(r))
                if self.status[r] == "running":
                    self.flagged.add(r)
                else:
                    self.status[r] = "cancelled"

        @invariant()
        def limits_hold_and_slots_match_running_runs(self) -> None:
            r, k = self.app.redis, self.k
            for r_id, expected in self.status.items():
                actual = self.do(r.hget(k.run(r_id), "status"))
                assert actual is not None and actual.decode() == expected, (r_id, expected)
            running = self._running()
            assert len(running) <= PER_JOB
            job_slot = {m.decode() for m in self.do(r.smembers(k.slot("job", "1:*")))}
            assert job_slot == running
            stat = self.do(r.hmget(k.queue_stat("q"), "ready", "scheduled", "waiting"))
            ready = sum(self.do(r.zcard(k.ready("q", f"job/0:{key}/1:*"))) for key in KEYS)
            counted = [int(v or 0) for v in stat]  # the queue counters metrics read
            assert counted == [ready, len(self._in("scheduled")), len(self._in("waiting"))]
            assert ready == len(self._in("queued"))
            for key in KEYS:
                mine = self._running(key)
                assert len(mine) <= PER_KEY
                held = {m.decode() for m in self.do(r.smembers(k.slot("job", f"0:{key}")))}
                assert held == mine, (key, held, mine)

    return FlowModel


def test_per_key_concurrency_follows_the_model(redis_url: str, is_cluster: bool) -> None:
    machine = make_machine(redis_url, is_cluster)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
