-- trigger_schedule: start a run of a schedule now (an operator's trigger); its ticks are
-- unchanged and overlap and flow control are not applied (an operator's explicit start);
-- it is pinned to the job's highest live version. The run becomes the schedule's last run.
-- KEYS[1] sched  keys.schedule(name)  HASH the schedule
-- ARGV[1] prefix  ARGV[2] name  ARGV[3] run_id
-- Returns the run id, or 0 when there is no such schedule.
-- @include keys.lua
-- @include now_ms.lua
-- @include create_run.lua
-- @include pick_version.lua
local f = redis.call('HMGET', KEYS[1], 'job', 'queue', 'payload')
if not f[1] then return 0 end
local now = now_ms()
local fields = {schedule = ARGV[2], scheduled_at = now}
local ver = pick_version(ARGV[1], f[1], 0, now)
if ver ~= 1 then fields['ver'] = ver end
create_run(ARGV[1], ARGV[3], f[1], f[2], f[3], now, now, fields)
redis.call('HSET', KEYS[1], 'last_run', ARGV[3])
return ARGV[3]
