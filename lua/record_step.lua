-- record_step: store a step's outcome in its run (fenced by the lease token).
-- KEYS[1] run  keys.run(id)  HASH step outcomes in fields s:<name>
-- ARGV[1] run_id  ARGV[2] token  ARGV[3] step name  ARGV[4] record (bytes)
-- ARGV[5] timeline type ('step_completed' | 'step_failed')
-- Returns 1 when a cancel was requested for the run, else 0.  Errors: LEASE_LOST.
-- @include now_ms.lua
-- @include timeline.lua
-- @include check_lease.lua
local rk = KEYS[1]
local f, err = check_lease(rk, ARGV[1], ARGV[2])
if not f then return redis.error_reply(err) end
if redis.call('HGET', rk, 's:' .. ARGV[3]) ~= ARGV[4] then -- else: a re-sent call
  redis.call('HSET', rk, 's:' .. ARGV[3], ARGV[4])
  timeline(rk, now_ms(), ARGV[5], {step = ARGV[3]})
end
if f[10] then return 1 end
return 0
