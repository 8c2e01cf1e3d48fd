-- due_schedules: the schedules due now by the server clock, in one bounded batch, with what
-- a worker needs to plan their ticks; and when the next one is due. An idle worker calls it
-- about twice a second: O(log N + due) whatever the number of schedules.
-- KEYS[1] scheds  keys.schedules()  ZSET name -> next fire ms (+inf while paused)
-- Derived (K): schedule hashes K.schedule(name).
-- ARGV[1] prefix  ARGV[2] limit
-- Returns {now ms, ms until the next schedule after now is due or -1, then per due
-- schedule: name, next, rev, job, cron, every_ms, timezone, catchup, jitter_ms}.
-- @include keys.lua
-- @include now_ms.lua
local prefix, zk = ARGV[1], KEYS[1]
local now = now_ms()
local names = redis.call('ZRANGEBYSCORE', zk, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local later = redis.call('ZRANGEBYSCORE', zk, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local wait = -1
if later[2] and later[2] ~= 'inf' then wait = math.max(0, tonumber(later[2]) - now) end
local out = {now, wait}
for _, name in ipairs(names) do
  local f = redis.call('HMGET', K.schedule(prefix, name), 'next', 'rev', 'job', 'cron', 'every',
    'tz', 'catchup', 'jitter')
  if f[2] then
    out[#out + 1] = name
    for j = 1, 8 do out[#out + 1] = f[j] end
  else
    redis.call('ZREM', zk, name) -- its hash is gone (deleted by hand)
  end
end
return out
