-- permits: with partitions, a queue's global concurrency limit. Each partition's take sees
-- only its own leases, so the limit is kept here, on the namespace tag: a worker holds one
-- permit per run of a limited queue it runs, asks for permits before a take and gives back
-- the ones it no longer needs (stackshift_redis/_worker/permits.py). A permit expires with
-- its holder's lease unless renewed, so a dead worker's permits come back by themselves.
-- KEYS[1] permits  keys.permits(queue)  ZSET permit id -> expiry ms; '!starved' (+inf)
--   while a worker was refused since the last give-back
-- KEYS[2] conf  keys.queue_conf(queue)  HASH its published concurrency: the limit applied
-- ARGV[1] op: take | renew | give
-- ARGV[2] the limit the worker knows (used when none is published)  ARGV[3] lease ms  ARGV[3+i] permit id_i (take: candidates, granted in
-- order; renew: held ids; give: ids given back)
-- Returns take: {granted ids}; renew: the number of ids still held; give: 1 when a worker
-- was refused meanwhile (the caller wakes the queue's workers), else 0.
-- Cost: O(log n) per id, n <= limit; take also one ZREMRANGEBYSCORE of expired permits.
-- @include now_ms.lua
local op, limit, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
if op == 'renew' then
  local held = 0
  for i = 1, #ARGV - 3 do
    held = held + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[3 + i])
  end
  return held
end
if op == 'give' then
  for i = 1, #ARGV - 3 do redis.call('ZREM', KEYS[1], ARGV[3 + i]) end
  if redis.call('ZREM', KEYS[1], '!starved') == 1 then return 1 end
  return 0
end
limit = tonumber(redis.call('HGET', KEYS[2], 'concurrency') or limit)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1)
local live = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], '!starved') then live = live - 1 end
local want = #ARGV - 3
local n = math.max(0, math.min(want, limit - live))
local granted = {}
for i = 1, n do
  redis.call('ZADD', KEYS[1], now + lease, ARGV[3 + i])
  granted[i] = ARGV[3 + i]
end
if n < want then redis.call('ZADD', KEYS[1], '+inf', '!starved') end
return granted
