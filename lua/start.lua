-- start: create runs of one job and make them ready (or schedule them), idempotently; one
-- call, N runs. Queue keys are derived with K (the run's group decides its ready set).
-- KEYS[2i-1] run   keys.run(id_i)         HASH the i-th run
-- KEYS[2i]   idem  keys.idem(job, key_i)  STRING key -> run id (the run key again when none)
-- ARGV[1] prefix  ARGV[2] job  ARGV[3] queue  ARGV[4] delay_ms  ARGV[5] at_ms (0: none)
-- ARGV[6] idem_ttl_ms  ARGV[7] extra fields (JSON object, may be '')  ARGV[8] n
-- ARGV[6+3i] run_id_i  ARGV[7+3i] has_idem_i ('1' | '0')  ARGV[8+3i] payload_i
-- Returns {run_id_1, deduplicated_1, ...}; a retried call (a lost reply re-sent) returns its
-- own runs, not deduplicated: a run id is created at most once.
-- @include keys.lua
-- @include now_ms.lua
-- @include create_run.lua
local prefix, job, queue = ARGV[1], ARGV[2], ARGV[3]
local delay_ms, at_ms, idem_ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local extra = {}
if ARGV[7] ~= '' then extra = cjson.decode(ARGV[7]) end
local n = tonumber(ARGV[8])
local now = now_ms()
local due = now + delay_ms
if at_ms > 0 then due = at_ms end
local out = {}
for i = 1, n do
  local rk, ik = KEYS[2 * i - 1], KEYS[2 * i]
  local id, has_idem, payload = ARGV[6 + 3 * i], ARGV[7 + 3 * i] == '1', ARGV[8 + 3 * i]
  local existing = false
  if has_idem then
    existing = redis.call('GET', ik)
    if existing and redis.call('EXISTS', K.run(prefix, existing)) == 0 then
      existing = false
    end
  end
  if existing and existing ~= id then
    out[#out + 1] = existing
    out[#out + 1] = 1
  elseif existing or redis.call('EXISTS', rk) == 1 then -- a client retry of this call
    out[#out + 1] = id
    out[#out + 1] = 0
  else
    if has_idem then
      redis.call('SET', ik, id, 'PX', idem_ttl)
      extra['idem_key'] = ik
    end
    create_run(prefix, id, job, queue, payload, now, due, extra)
    extra['idem_key'] = nil
    out[#out + 1] = id
    out[#out + 1] = 0
  end
end
return out
