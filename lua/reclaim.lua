-- reclaim: make runs whose lease expired (their worker died or stalled) ready again;
-- bounded batch. A run with a pending cancel is cancelled instead.
-- KEYS[1] leases  keys.leases(queue)  ZSET run id -> lease expiry ms
-- ARGV[1] prefix  ARGV[2] queue  ARGV[3] limit  ARGV[4] retention_ms
-- Returns the recovered run ids.
-- @include keys.lua
-- @include now_ms.lua
-- @include release_lease.lua
-- @include make_ready.lua
-- @include finish_run.lua
local prefix, queue = ARGV[1], ARGV[2]
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(expired) do
  release_lease(prefix, queue, id)
  local rk = K.run(prefix, id)
  local f = redis.call('HMGET', rk, 'status', 'job', 'cancel', 'group', 'priority')
  if f[1] == 'running' then
    if f[3] then
      local err = cjson.encode({type = 'RunCancelled', message = f[3], traceback = ''})
      finish_run(prefix, rk, id, f[2], 'running', 'cancelled', now, tonumber(ARGV[4]),
        {error = err}, {reason = f[3]}, nil)
    else
      redis.call('HDEL', rk, 'token')
      redis.call('HINCRBY', rk, 'expired', 1) -- leases lost by running attempts (poison)
      make_ready(prefix, rk, id, f[2], queue, f[4], f[5], 'running', now, 'recovered', nil)
      out[#out + 1] = id
    end
  end
end
return out
