"""Model-based test of run transitions (Hypothesis state machine over the Lua scripts).

Random sequences of start (with and without idempotency keys), take, complete, fail
(retry or final), promote, cancel, manual retry (of failed or cancelled runs), bulk cancel
and retry, and lease expiry run against real Redis;
after every step each run's status, its status indexes, the lease set, the ready set
and the schedule must agree with a simple model.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from stackshift_redis import StackShift
from stackshift_redis._core.keys import STATUSES, UNTIMED
from stackshift_redis._core.records import new_run_id
from stackshift_redis._core.scripts import FailRequest, StartRequest

FINAL = {"completed", "failed", "cancelled"}
ERR = json.dumps({"type": "E", "message": "m", "traceback": ""})


def make_machine(redis_url: str, is_cluster: bool) -> type[RuleBasedStateMachine]:
    class RunModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            if is_cluster:
                from redis.asyncio.cluster import RedisCluster

                host, port = redis_url.split("//")[1].split("/")[0].split(":")
                client: Any = RedisCluster(host=host, port=int(port))
                self.app = StackShift(redis=client, namespace=f"m{uuid.uuid4().hex[:10]}")
            else:
                self.app = StackShift(redis_url, namespace=f"m{uuid.uuid4().hex[:10]}")
            self.s = self.app._core.scripts
            self.k = self.app._core.keys
            self.status: dict[str, str] = {}
            self.tokens: dict[str, str] = {}
            self.idem: dict[str, str] = {}
            self.order: list[str] = []  # queued runs in the order they became ready

        def do(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            self.do(self.app.close())
            self.loop.close()

        def _in(self, *statuses: str) -> list[str]:
            return sorted(r for r, s in self.status.items() if s in statuses)

        @rule(idem=st.sampled_from([None, "a", "b"]), delay=st.booleans())
        def start(self, idem: str | None, delay: bool) -> None:
            run = (new_run_id(), idem, b"\xc0")
            [(run_id, dedup, _)] = self.do(
                self.s.start(
                    StartRequest(
                        job="job", queue="q", idem_ttl_ms=60_000, delay_ms=60_000 if delay else 0
                    ),
                    [run],
                )
            )
            if idem is not None and idem in self.idem:
                assert dedup and run_id == self.idem[idem]
                return
            assert not dedup and run_id == run[0]
            if idem is not None:
                self.idem[idem] = run_id
            self._set(run_id, "scheduled" if delay else "queued")

        def _set(self, run_id: str, status: str) -> None:
            if run_id in self.order:
                self.order.remove(run_id)
            if status == "queued":
                self.order.append(run_id)
            self.status[run_id] = status

        @rule(n=st.integers(1, 5))
        def take(self, n: int) -> None:
            reply = self.do(
                self.s.take([("q", 60_000)], n, max_deliveries=100, retention_ms=60_000)
            )
            assert reply.dropped == []
            expected = self.order[:n]  # FIFO: the oldest ready runs, at most n
            assert [t.run_id for t in reply.taken] == expected
            for t in reply.taken:
                self._set(t.run_id, "running")
                self.tokens[t.run_id] = t.token

        @rule(data=st.data())
        def complete(self, data: st.DataObject) -> None:
            running = self._in("running")
            if running:
                run_id = data.draw(st.sampled_from(running))
                call = self.s.complete_call(run_id, self.tokens[run_id], b"\xc0", 60_000)
                self.do(self.s.run_batch([call]))
                self._set(run_id, "completed")

        @rule(data=st.data(), retry=st.booleans())
        def fail(self, data: st.DataObject, retry: bool) -> None:
            running = self._in("running")
            if running:
                run_id = data.draw(st.sampled_from(running))
                outcome = "retry" if retry else "failed"
                call = self.s.fail_call(
                    FailRequest(
                        run_id=run_id,
                        token=self.tokens[run_id],
                        error_json=ERR,
                        outcome=outcome,
                        retention_ms=60_000,
                    )
                )
                self.do(self.s.run_batch([call]))
                self._set(run_id, "scheduled" if retry else "failed")

        @rule()
        def promote_due(self) -> None:
            self.do(self.s.promote("q"))
            due = self.do(self.app.redis.zrange(self.k.delayed("q"), 0, -1, withscores=True))
            for _member, score in due:
                assert score > 0
            # retries were scheduled with delay 0: they are due and now queued
            promoted = [
                run_id
                for run_id in self._in("scheduled")
                if self.do(self.app.redis.zscore(self.k.delayed("q"), run_id)) is None
            ]
            ready = self.do(self.app.redis.zrange(self.k.ready("q", "0"), 0, -1))
            for member in ready:  # promoted runs became ready in one script: in its order
                if member.decode() in promoted:
                    self._set(member.decode(), "queued")

        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            if self.status:
                run_id = data.draw(st.sampled_from(sorted(self.status)))
                changed = self.do(self.app.cancel(run_id))
                before = self.status[run_id]
                assert changed == (before not in FINAL)
                if before in ("queued", "scheduled", "waiting"):
                    self._set(run_id, "cancelled")

        @rule(data=st.data())
        def manual_retry(self, data: st.DataObject) -> None:
            failed = self._in("failed", "cancelled")
            if failed:
                run_id = data.draw(st.sampled_from(failed))
                self.do(self.app.retry(run_id))
                self._set(run_id, "queued")

        @rule(which=st.sampled_from(["queued", "scheduled", "running"]))
        def bulk_cancel(self, which: str) -> None:
            hit = self._in(which)
            if which == "running":  # flagged (once): they stop at their next step
                hit = [
                    r for r in hit if not self.do(self.app.redis.hexists(self.k.run(r), "cancel"))
                ]
            assert self.do(self.app.cancel_runs(job="job", status=which)) == len(hit)
            if which != "running":
                for run_id in hit:
                    self._set(run_id, "cancelled")

        @rule()
        def bulk_retry(self) -> None:
            ready: list[str] = []  # they become ready in index order, failed ones first
            for s in ("failed", "cancelled"):
                ready += [
                    m.decode() for m in self.do(self.app.redis.zrange(self.k.idx_status(s), 0, -1))
                ]
            assert self.do(self.app.retry_runs(status=["failed", "cancelled"])) == len(ready)
            for run_id in ready:
                self._set(run_id, "queued")

        @rule(data=st.data())
        def lease_expires(self, data: st.DataObject) -> None:
            running = self._in("running")
            if running:
                run_id = data.draw(st.sampled_from(running))
                cancel_pending = self.do(self.app.redis.hexists(self.k.run(run_id), "cancel"))
                self.do(self.app.redis.zadd(self.k.leases("q"), {run_id: 1}))
                recovered = self.do(self.s.reclaim("q", 60_000))
                assert (run_id in recovered) != cancel_pending
                self._set(run_id, "queued" if run_id in recovered else "cancelled")

        @invariant()
        def stored_state_matches_the_model(self) -> None:
            r, k = self.app.redis, self.k
            for run_id, expected in self.status.items():
                actual = self.do(r.hget(k.run(run_id), "status"))
                assert actual is not None and actual.decode() == expected, (run_id, expected)
                for s in STATUSES:
                    member = self.do(r.zscore(k.ord_status(s), run_id)) is not None
                    by_job = self.do(r.zscore(k.ord_job_status("job", s), run_id)) is not None
                    indexed = s == expected and s != "running"  # running: in the leases
                    assert member == by_job == indexed, (run_id, s, expected)
                    timed = self.do(r.zscore(k.idx_status(s), run_id)) is not None
                    timed_job = self.do(r.zscore(k.idx_job_status("job", s), run_id)) is not None
                    want = s == expected and s not in UNTIMED  # queued, running: none
                    assert timed == timed_job == want, (run_id, s, expected)
            leased = {m.decode() for m in self.do(r.zrange(k.leases("q"), 0, -1))}
            assert leased == set(self._in("running"))
            delayed = {m.decode() for m in self.do(r.zrange(k.delayed("q"), 0, -1))}
            assert set(self._in("scheduled")) <= delayed
            ready = [m.decode() for m in self.do(r.zrange(k.ready("q", "0"), 0, -1))]
            assert ready == self.order

    return RunModel


def test_run_transitions_follow_the_model(redis_url: str, is_cluster: bool) -> None:
    machine = make_machine(redis_url, is_cluster)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
