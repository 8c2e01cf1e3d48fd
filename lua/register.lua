-- register: a live worker's heartbeat registrations, refreshed every few seconds: its
-- job -> queue map, its on_event triggers and the queues it consumes, each owned by the
-- heartbeat expiry of the workers that register it. Entries that no live worker refreshed
-- are dropped (bounded batch), so a renamed or moved job stops being started.
-- KEYS[1] owners  keys.owners()  ZSET entry -> expiry ms of its latest registration
-- KEYS[2] jobs    keys.jobs()    HASH job -> queue
-- KEYS[3] qlive   keys.qlive()   ZSET queue -> expiry ms of its latest consumer's heartbeat
-- KEYS[3+i] trig  keys.triggers(event_i)  HASH job -> queue, one per trigger below
-- Derived (K): triggers of pruned entries K.triggers(event).
-- ARGV[1] prefix  ARGV[2] ttl_ms  ARGV[3] jobs JSON {job: queue}
-- ARGV[4] triggers JSON [[event, job, queue], ...] (KEYS[3+i] is trigger i's hash)
-- ARGV[5] consumed queues JSON [queue, ...]
-- ARGV[6] job versions JSON [[job, [version, ...]], ...]: each joins K.job_versions(job)
-- with this expiry (expired versions leave it), and runs held for it (K.unserved, see
-- lib/hold_unserved.lua) are made ready, up to 100 per version and call.
-- Returns the number of stale entries dropped.
-- Cost: O(registrations + dropped entries + released runs); at most 200 dropped per call.
-- @include keys.lua
-- @include now_ms.lua
-- @include release_unserved.lua
local prefix = ARGV[1]
local now = now_ms()
local expiry = now + tonumber(ARGV[2])
for job, queue in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', KEYS[2], job, queue)
  redis.call('ZADD', KEYS[1], 'GT', expiry, 'j\31' .. job .. '\31' .. queue)
end
for i, t in ipairs(cjson.decode(ARGV[4])) do
  redis.call('HSET', KEYS[3 + i], t[2], t[3])
  redis.call('ZADD', KEYS[1], 'GT', expiry, 't\31' .. t[1] .. '\31' .. t[2] .. '\31' .. t[3])
end
for _, queue in ipairs(cjson.decode(ARGV[5])) do
  redis.call('ZADD', KEYS[3], 'GT', expiry, queue)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
for _, jv in ipairs(cjson.decode(ARGV[6] or '[]')) do
  local vk = K.job_versions(prefix, jv[1])
  redis.call('ZREMRANGEBYSCORE', vk, '-inf', now)
  for _, v in ipairs(jv[2]) do
    redis.call('ZADD', vk, 'GT', expiry, v)
    release_unserved(prefix, jv[1], tostring(v), now, 100)
  end
end
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 200)
for _, entry in ipairs(stale) do
  local p = {}
  for part in string.gmatch(entry, '[^\31]+') do p[#p + 1] = part end
  if p[1] == 'j' and redis.call('HGET', KEYS[2], p[2]) == p[3] then
    redis.call('HDEL', KEYS[2], p[2])
  elseif p[1] == 't' then
    local trig = K.triggers(prefix, p[2])
    if redis.call('HGET', trig, p[3]) == p[4] then redis.call('HDEL', trig, p[3]) end
  end
  redis.call('ZREM', KEYS[1], entry)
end
return #stale
