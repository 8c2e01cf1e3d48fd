-- control_schedule: pause, resume or delete a schedule. Pause keeps it and parks it at +inf
-- (nothing fires); resume fires next at ARGV[3] (the first tick after now: no burst of the
-- ticks missed while paused), only if its definition is still at rev ARGV[4].
-- KEYS[1] sched   keys.schedule(name)  HASH the schedule
-- KEYS[2] scheds  keys.schedules()     ZSET name -> next fire ms (+inf while paused)
-- ARGV[1] name  ARGV[2] op ('pause' | 'resume' | 'delete')  ARGV[3] next fire ms (resume)
-- ARGV[4] expected rev (resume)
-- Returns 1 when done (or already so), 0 when there is no such schedule, -1 (resume) when
-- the definition changed since ARGV[4] was read.
local sk, name, op = KEYS[1], ARGV[1], ARGV[2]
local f = redis.call('HMGET', sk, 'rev', 'paused')
if not f[1] then
  redis.call('ZREM', KEYS[2], name)
  return 0
end
if op == 'delete' then
  redis.call('DEL', sk)
  redis.call('ZREM', KEYS[2], name)
elseif op == 'pause' then
  redis.call('HSET', sk, 'paused', 1)
  redis.call('ZADD', KEYS[2], '+inf', name)
elseif f[2] then
  if f[1] ~= ARGV[4] then return -1 end
  redis.call('HDEL', sk, 'paused')
  redis.call('HSET', sk, 'next', ARGV[3])
  redis.call('ZADD', KEYS[2], ARGV[3], name)
end
return 1
