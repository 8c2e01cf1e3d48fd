-- retry: make a failed or cancelled run ready again; its completed steps are reused, its
-- retries start afresh. See lib/retry_run.lua.
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id
-- Returns 1, or 0 when there is no such run.  Errors: BAD_STATE when it is neither failed
-- nor cancelled.
-- @include keys.lua
-- @include now_ms.lua
-- @include retry_run.lua
local prefix, id, rk = ARGV[1], ARGV[2], KEYS[1]
local f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'group', 'priority', 'out')
if not f[1] then return 0 end
if f[1] ~= 'failed' and f[1] ~= 'cancelled' then
  return redis.error_reply('BAD_STATE run ' .. id .. ' is ' .. f[1] ..
    ', not failed or cancelled')
end
retry_run(prefix, rk, id, f, now_ms(), f[6])
return 1
