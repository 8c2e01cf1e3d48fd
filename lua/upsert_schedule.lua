-- upsert_schedule: create a schedule or update its definition. The pending tick is kept
-- when the cadence (cron, interval, time zone) is unchanged, so an upsert at every worker
-- start loses no missed tick; a new or changed cadence fires next at ARGV[13]. A paused
-- schedule stays paused. Every upsert bumps `rev`, which fire_schedule compares.
-- KEYS[1] sched   keys.schedule(name)  HASH the schedule
-- KEYS[2] scheds  keys.schedules()     ZSET name -> next fire ms (+inf while paused)
-- ARGV[1] name  ARGV[2] job  ARGV[3] queue  ARGV[4] payload  ARGV[5] cron ('' for none)
-- ARGV[6] every_ms (0 for none)  ARGV[7] timezone  ARGV[8] cadence signature
-- ARGV[9] overlap  ARGV[10] catchup  ARGV[11] jitter_ms  ARGV[12] origin ('api' | 'job')
-- ARGV[13] next fire ms for a new or changed cadence
-- Returns {1 if created else 0, next fire ms, 1 if paused else 0}.
-- @include now_ms.lua
local sk, name = KEYS[1], ARGV[1]
local old = redis.call('HMGET', sk, 'sig', 'next', 'paused')
local now = now_ms()
redis.call('HSET', sk, 'name', name, 'job', ARGV[2], 'queue', ARGV[3], 'payload', ARGV[4],
  'cron', ARGV[5], 'every', ARGV[6], 'tz', ARGV[7], 'sig', ARGV[8], 'overlap', ARGV[9],
  'catchup', ARGV[10], 'jitter', ARGV[11], 'origin', ARGV[12], 'updated', now)
redis.call('HINCRBY', sk, 'rev', 1)
local created = 0
if not old[1] then
  created = 1
  redis.call('HSET', sk, 'created', now)
end
local nxt = old[2]
if old[1] ~= ARGV[8] or not nxt then
  nxt = ARGV[13]
  redis.call('HSET', sk, 'next', nxt)
end
if old[3] then
  redis.call('ZADD', KEYS[2], '+inf', name)
  return {created, tonumber(nxt), 1}
end
redis.call('ZADD', KEYS[2], nxt, name)
return {created, tonumber(nxt), 0}
