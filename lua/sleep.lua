-- sleep: a sleep step: register its timer as a pending wait of the running run (see
-- lib/add_wait.lua), or record the step at once when already due (server clock).
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] step name
-- ARGV[5] sleep ms (relative) or -1  ARGV[6] until ms (absolute) or -1
-- ARGV[7] the step's completed record (stored when the sleep is over)
-- ARGV[8] '1': park the run right away when the wait is pending (the only branch running)
-- A cancel requested for the run: {'cancel'} instead of parking.
-- Returns {'done', record}, {'pending'} (registered; the attempt goes on), {'waiting'}
-- (registered and parked) or {'parked'} (the attempt parked the run before this call).
-- Errors: LEASE_LOST.
-- @include now_ms.lua
-- @include timeline.lua
-- @include wait_begin.lua
-- @include add_wait.lua
-- @include park_run.lua
local prefix, id, step = ARGV[1], ARGV[2], ARGV[4]
local rk = KEYS[1]
local f, reply = wait_begin(rk, id, ARGV[3], step)
if not f then return reply end
local now = now_ms()
local due = tonumber(ARGV[6])
if due < 0 then due = now + tonumber(ARGV[5]) end
if due <= now then
  redis.call('HSET', rk, 's:' .. step, ARGV[7])
  timeline(rk, now, 'sleep_done', {step = step})
  return {'done', ARGV[7]}
end
add_wait(prefix, rk, id, step, {k = 'sleep', d = due}, {wr_none = ARGV[7]})
if ARGV[8] ~= '1' then return {'pending'} end
if not park_run(prefix, rk, id, f, {step}, now) then return {'cancel'} end
return {'waiting'}
