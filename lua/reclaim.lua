-- reclaim: re-queue runs whose lease expired (their worker died or stalled); bounded batch.
-- KEYS[1] leases  keys.leases(queue)  ZSET run id -> lease expiry ms
-- KEYS[2] stream  keys.stream(queue)  STREAM
-- ARGV[1] prefix  ARGV[2] limit  ARGV[3] retention_ms
-- Returns the recovered run ids. A run with a pending cancel is cancelled instead.
-- @include key.lua
-- @include now_ms.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include finish_run.lua
local prefix = ARGV[1]
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  local rk = key(prefix, 'run', id)
  local f = redis.call('HMGET', rk, 'status', 'job', 'cancel')
  if f[1] == 'running' then
    if f[3] then
      finish_run(prefix, rk, id, f[2], 'running', 'cancelled', now, tonumber(ARGV[3]), {},
        {reason = f[3]}, nil)
    else
      redis.call('HDEL', rk, 'token')
      redis.call('XADD', KEYS[2], '*', 'r', id)
      timeline(rk, now, 'recovered')
      set_status(prefix, rk, id, f[2], 'running', 'queued', now, 0)
      out[#out + 1] = id
    end
  end
end
return out
