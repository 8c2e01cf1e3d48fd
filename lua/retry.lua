-- retry: queue a failed run again; its completed steps are reused, its retries start afresh.
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id
-- Returns 1, or false when there is no such run.  Errors: BAD_STATE when it is not failed.
-- @include key.lua
-- @include now_ms.lua
-- @include timeline.lua
-- @include set_status.lua
local prefix, id, rk = ARGV[1], ARGV[2], KEYS[1]
local f = redis.call('HMGET', rk, 'status', 'job', 'queue')
if not f[1] then return false end
if f[1] ~= 'failed' then
  return error({err = 'BAD_STATE run ' .. id .. ' is ' .. f[1] .. ', not failed'})
end
local now = now_ms()
redis.call('HSET', rk, 'fails', 0, 'deliv', 0)
redis.call('HDEL', rk, 'finished', 'error')
redis.call('PERSIST', rk)
redis.call('XADD', key(prefix, 'q', f[3], 'stream'), '*', 'r', id)
timeline(rk, now, 'retried')
set_status(prefix, rk, id, f[2], 'failed', 'queued', now, 0)
return 1
