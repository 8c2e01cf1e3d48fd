-- wake: re-queue a scheduled or waiting run into `stream`; cause 'timer' for due times.
-- A waiting run's pending step (field wait) is settled first: see settle_wait().
-- Returns true when the run was queued. Needs key(), timeline(), set_status().
-- @include key.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include settle_wait.lua
local function wake(prefix, stream, id, now, cause, record)
  local rk = key(prefix, 'run', id)
  local f = redis.call('HMGET', rk, 'status', 'job')
  if f[1] ~= 'scheduled' and f[1] ~= 'waiting' then return false end
  if f[1] == 'waiting' then
    settle_wait(prefix, rk, id, now, cause, record)
  end
  redis.call('XADD', stream, '*', 'r', id)
  timeline(rk, now, f[1] == 'waiting' and 'resumed' or 'queued')
  set_status(prefix, rk, id, f[2], f[1], 'queued', now, 0)
  return true
end
