-- advance_schedule: with partitions (P > 1), the second half of a schedule's fire. Its runs
-- live on partitions, the schedule on the namespace's tag, so the caller first creates each
-- tick's run on its partition (`start`, under a run id derived from the schedule and the
-- tick: a second fire of a tick finds its run, stackshift_redis/_client/schedule_parts.py),
-- then calls this. Op 'fire': compare-and-set on the stored next fire time and definition
-- rev, as fire_schedule does, then record the next fire time, the newest tick handled and
-- the last run. Op 'trigger': record a manual trigger's run as the last run of a schedule
-- that still exists (the fire arguments after the last run are unused).
-- KEYS[1] sched   keys.schedule(name)  HASH the schedule
-- KEYS[2] scheds  keys.schedules()     ZSET name -> next fire ms
-- ARGV[1] name  ARGV[2] op ('fire' | 'trigger')  ARGV[3] last run id ('' for none)
-- ARGV[4] expected next fire ms  ARGV[5] expected rev  ARGV[6] new next fire ms
-- ARGV[7] the newest tick handled (epoch ms)
-- Returns 1 when done, 0 when stale (fire: another caller won, the schedule changed, is
-- paused or gone, or is not due by the server clock; trigger: the schedule is gone).
-- @include now_ms.lua
local sk, name, last = KEYS[1], ARGV[1], ARGV[3]
if ARGV[2] == 'trigger' then
  if redis.call('EXISTS', sk) == 0 then return 0 end
  redis.call('HSET', sk, 'last_run', last)
  return 1
end
local f = redis.call('HMGET', sk, 'next', 'rev', 'paused', 'last_tick')
if not f[2] or f[1] ~= ARGV[4] or f[2] ~= ARGV[5] or f[3] then return 0 end
if tonumber(ARGV[4]) > now_ms() then return 0 end
local handled = math.max(tonumber(ARGV[7]), tonumber(f[4] or '0'))
redis.call('HSET', sk, 'next', ARGV[6], 'last_tick', handled)
if last ~= '' then redis.call('HSET', sk, 'last_run', last) end
redis.call('ZADD', KEYS[2], ARGV[6], name)
return 1
