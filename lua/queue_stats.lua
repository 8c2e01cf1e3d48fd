-- queue_stats: gauges of a namespace's queues for metrics, read in one call (no scans):
-- per queue the runs ready, scheduled, running (leased), waiting and held for a version no
-- live worker serves (unserved), and the live workers.
-- KEYS[1] jobs     keys.jobs()     HASH job -> queue, published by workers
-- KEYS[2] workers  keys.workers()  ZSET worker id -> heartbeat expiry ms
-- Derived (K): K.queue_stat(queue) (counters kept by make_ready, take, unready, suspend_run,
-- create_run, fail and cancel), K.leases(queue).
-- ARGV[1] prefix  ARGV[1+i] queue_i (queues the caller knows; published ones are added)
-- Returns {live workers, {queue, ready, scheduled, running, waiting, unserved}, ...}.
-- Cost: HVALS of the job map, ZCOUNT, then 2 commands per queue.
-- @include keys.lua
-- @include now_ms.lua
local prefix = ARGV[1]
local queues, seen = {}, {}
local function add(q)
  if not seen[q] then
    seen[q] = true
    queues[#queues + 1] = q
  end
end
local i = 1
while ARGV[1 + i] do
  add(ARGV[1 + i])
  i = i + 1
end
for _, q in ipairs(redis.call('HVALS', KEYS[1])) do add(q) end
local out = {redis.call('ZCOUNT', KEYS[2], now_ms(), '+inf')}
for _, q in ipairs(queues) do
  local c = redis.call('HMGET', K.queue_stat(prefix, q), 'ready', 'scheduled', 'waiting',
    'unserved')
  local running = redis.call('ZCARD', K.leases(prefix, q))
  out[#out + 1] = {q, math.max(tonumber(c[1] or '0'), 0), math.max(tonumber(c[2] or '0'), 0),
    running, math.max(tonumber(c[3] or '0'), 0), math.max(tonumber(c[4] or '0'), 0)}
end
return out
