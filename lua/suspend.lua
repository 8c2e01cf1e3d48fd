-- suspend: a sleep step: park the running run until `due` (server clock), freeing its slot.
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] step name
-- ARGV[5] sleep ms (relative) or -1  ARGV[6] until ms (absolute) or -1
-- ARGV[7] the step's completed record (stored when the sleep is over)
-- Returns 'done' (already due: the step is recorded, go on) or 'waiting'.
-- Errors: LEASE_LOST.
-- @include now_ms.lua
-- @include timeline.lua
-- @include check_lease.lua
-- @include parked_by.lua
-- @include suspend_run.lua
local prefix, id, step = ARGV[1], ARGV[2], ARGV[4]
local rk = KEYS[1]
local f, err = check_lease(rk, id, ARGV[3])
if not f then
  local parked = parked_by(rk, ARGV[3], step)
  if parked then return 'waiting' end -- a re-sent call
  return redis.error_reply(err)
end
local now = now_ms()
local due = tonumber(ARGV[6])
if due < 0 then due = now + tonumber(ARGV[5]) end
if due <= now then
  redis.call('HSET', rk, 's:' .. step, ARGV[7])
  timeline(rk, now, 'sleep_done', {step = step})
  return 'done'
end
suspend_run(prefix, rk, id, f[2], f[3], now, due,
  {wait_kind = 'sleep', wait_step = step, wait_timeout_rec = ARGV[7]})
return 'waiting'
