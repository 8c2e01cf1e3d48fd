-- record_step: store a step's outcome in its run (fenced by the lease token).
-- KEYS[1] run  keys.run(id)  HASH step outcomes in fields s:<name>
-- ARGV[1] run_id  ARGV[2] token  ARGV[3] step name  ARGV[4] record (bytes)
-- ARGV[5] timeline type ('step_completed' | 'step_failed')
-- Returns 1 when a cancel was requested for the run, else 0.  Errors: LEASE_LOST.
-- Cost: one HMGET (the lease check and the step's current record), one HSET (the record
-- and its timeline entry).
-- @include now_ms.lua
-- @include check_lease.lua
local rk = KEYS[1]
local field = 's:' .. ARGV[3]
local f, err = check_lease(rk, ARGV[1], ARGV[2], field)
if not f then return redis.error_reply(err) end
if f[14] ~= ARGV[4] then -- else: a re-sent call
  local n = (tonumber(f[5]) or 0) + 1
  redis.call('HSET', rk, field, ARGV[4], 'tl_len', n, 't:' .. n,
    cjson.encode({step = ARGV[3], type = ARGV[5], at = now_ms()}))
end
if f[10] then return 1 end
return 0
