-- start: create runs of one job and make them ready (or schedule them), idempotently and
-- under the job's flow-control rules; one call, N runs. Queue keys are derived with K (the
-- run's group decides its ready set).
-- KEYS[2i-1] run   keys.run(id_i)         HASH the i-th run
-- KEYS[2i]   idem  keys.idem(job, key_i)  STRING key -> run id (the run key again when none)
-- ARGV[1] prefix  ARGV[2] job  ARGV[3] queue  ARGV[4] delay_ms  ARGV[5] at_ms (0: none)
-- ARGV[6] idem_ttl_ms  ARGV[7] extra fields (JSON object, may be '')  ARGV[8] n
-- ARGV[9] retention_ms (a singleton 'cancel' finishes the old run)
-- ARGV[10] definitions revision the plans were made from (lib/defs_rev.lua)
-- ARGV[11] version to pin the runs to (0: the highest live one, lib/pick_version.lua)
-- ARGV[8+4i] run_id_i  ARGV[9+4i] has_idem_i ('1' | '0')  ARGV[10+4i] payload_i
-- ARGV[11+4i] plan_i: the run's flow-control plan (JSON, see stackshift_redis/_core/flow.py; '')
-- Returns {run_id_1, deduplicated_1, skipped_1, ...}: skipped '' or 'rate_limited' |
-- 'singleton' (then run_id ''); a retried call (a lost reply re-sent) returns its own runs,
-- not deduplicated: a run id is created at most once; a start that joins an open debounce
-- burst returns that run, deduplicated.
-- Errors: STALE when the definitions changed since ARGV[10] (nothing written).
-- @include keys.lua
-- @include now_ms.lua
-- @include start_once.lua
-- @include defs_rev.lua
-- @include pick_version.lua
-- @include with_version.lua
local prefix, job, queue = ARGV[1], ARGV[2], ARGV[3]
local delay_ms, at_ms, idem_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local extra = {}
if ARGV[7] ~= '' then extra = cjson.decode(ARGV[7]) end
local n, keep = tonumber(ARGV[8]), tonumber(ARGV[9])
local stale = defs_rev(prefix, ARGV[10])
if stale then return stale end
local now = now_ms()
extra = with_version(extra, pick_version(prefix, job, tonumber(ARGV[11]), now))
local due = now + delay_ms
if at_ms > 0 then due = at_ms end
local out = {}
for i = 1, n do
  local rk, ik = KEYS[2 * i - 1], KEYS[2 * i]
  local id, has_idem, payload = ARGV[8 + 4 * i], ARGV[9 + 4 * i] == '1', ARGV[10 + 4 * i]
  local rid, dedup, skipped = start_once(prefix, job, queue, rk, ik, id, has_idem, payload,
    ARGV[11 + 4 * i], extra, now, due, keep, idem_ttl)
  out[#out + 1] = rid
  out[#out + 1] = dedup
  out[#out + 1] = skipped
end
return out
