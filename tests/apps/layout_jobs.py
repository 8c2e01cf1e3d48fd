"""The app of the storage-layout tests (`stackshift-worker tests.apps.layout_jobs:app`,
tests/test_layout_procs.py). Besides its job it installs, for tests only, a migration step
and the layout module's timings, from the environment:

- LAYOUT_STEP=1 installs the test step: it converts the items a test put in the sorted
  set `obs("items")`, LAYOUT_STEP_PER_CALL per call (default 2), each call sleeping
  LAYOUT_STEP_DELAY seconds (default 0): a slow, multi-batch step. LAYOUT_STEP_HANG_AT=n:
  the n-th call (of all processes) hangs after converting, before its cursor is saved.
- LAYOUT_TARGET: the layout this process writes (default: the library's), and the one
  the step leads to: 3 makes this process a "next release" on a namespace of layout 2.
- LAYOUT_LOCK_MS, LAYOUT_RECHECK_S, LAYOUT_DRAIN_MARGIN_S, LAYOUT_SWEEP_EVERY_S,
  LAYOUT_SWEEP_AFTER_S: `stackshift_redis._core.layout` constants of the same names.
- LAYOUT_RUNS: how many runs of job `mark` the namespace holds while it migrates: each
  call of the step checks that none of them was taken yet (else it sets `obs("touched")`).

Each call of the step records, in one script, under `obs(...)`: `calls` (+1), `pids` (this
process), `first_ms` / `last_ms` (server clock), and per item `tries` (+1 every time a
call reaches it) and `applied` (+1 only when it converts it: the idempotency check is
`conv`, set in the same script). A batch run twice shows in `tries`, never in `applied`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from stackshift_redis import RunContext
from stackshift_redis._core import layout
from stackshift_redis._core.migrations import MIGRATIONS, Migration

from . import app_from_env, obs

app = app_from_env()
app.queue("lay", visibility_timeout=2)

for name in ("LOCK_MS", "RECHECK_S", "DRAIN_MARGIN_S", "SWEEP_EVERY_S", "SWEEP_AFTER_S"):
    if f"LAYOUT_{name}" in os.environ:
        setattr(layout, name, type(getattr(layout, name))(float(os.environ[f"LAYOUT_{name}"])))
TARGET = int(os.environ.get("LAYOUT_TARGET", layout.LAYOUT))
layout.LAYOUT = TARGET

CONVERT = """
local items, conv, applied, tries, calls, pids, first, last, touched, queued, running =
  unpack(KEYS)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local call = redis.call('INCR', calls)
redis.call('SADD', pids, ARGV[3])
redis.call('SET', first, now, 'NX')
redis.call('SET', last, now)
local runs = tonumber(ARGV[4])
if runs > 0 and (redis.call('ZCARD', queued) ~= runs or redis.call('ZCARD', running) > 0) then
  redis.call('SET', touched, now)
end
local low = ARGV[1] == '' and '-' or '(' .. ARGV[1]
local batch = redis.call('ZRANGEBYLEX', items, low, '+', 'LIMIT', 0, tonumber(ARGV[2]))
local done = 0
for _, item in ipairs(batch) do
  redis.call('HINCRBY', tries, item, 1)
  if redis.call('HSETNX', conv, item, 1) == 1 then
    redis.call('HINCRBY', applied, item, 1)
    done = done + 1
  end
end
if #batch < tonumber(ARGV[2]) then return {'', done, call} end
return {batch[#batch], done, call}
"""


async def convert(ns: Any, cursor: str, limit: int) -> tuple[str | None, int]:
    """The test step: converts the next LAYOUT_STEP_PER_CALL items after `cursor`."""
    await asyncio.sleep(float(os.environ.get("LAYOUT_STEP_DELAY", "0")))
    names = ("items", "conv", "applied", "tries", "calls", "pids", "first_ms", "last_ms",
             "touched")  # fmt: skip
    keys = [obs(n) for n in names]
    keys += [ns.keys.ord_status("queued"), ns.keys.leases("lay")]
    per_call = os.environ.get("LAYOUT_STEP_PER_CALL", "2")
    runs = os.environ.get("LAYOUT_RUNS", "0")
    nxt, done, call = await ns.redis.eval(
        CONVERT, len(keys), *keys, cursor, per_call, os.getpid(), runs
    )
    if int(call) == int(os.environ.get("LAYOUT_STEP_HANG_AT", "0")):
        await asyncio.sleep(3600)  # converted, cursor not saved: a test kills us here
    return (nxt.decode() or None), int(done)


if os.environ.get("LAYOUT_STEP") == "1":
    MIGRATIONS.append(Migration(f"test-step-{TARGET}", "test items", convert, TARGET))


@app.job("mark", queue="lay")
async def mark(ctx: RunContext) -> Any:
    """Returns its payload."""
    return ctx.payload
