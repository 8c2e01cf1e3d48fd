-- retry: make a failed run ready again; its completed steps are reused, its retries start
-- afresh.
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id
-- Returns 1, or 0 when there is no such run.  Errors: BAD_STATE when it is not failed.
-- @include keys.lua
-- @include now_ms.lua
-- @include make_ready.lua
local prefix, id, rk = ARGV[1], ARGV[2], KEYS[1]
local f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'group', 'priority')
if not f[1] then return 0 end
if f[1] ~= 'failed' then
  return redis.error_reply('BAD_STATE run ' .. id .. ' is ' .. f[1] .. ', not failed')
end
redis.call('HSET', rk, 'fails', 0, 'deliveries', 0)
redis.call('HDEL', rk, 'finished', 'error')
redis.call('PERSIST', rk)
make_ready(prefix, rk, id, f[2], f[3], f[4], f[5], 'failed', now_ms(), 'retried', nil)
return 1
