-- wake: make a scheduled or waiting run of `queue` ready; cause 'timer' for due times.
-- A waiting run's pending step is settled first: see settle_wait().
-- Returns true when the run was made ready.
-- @include keys.lua
-- @include settle_wait.lua
-- @include make_ready.lua
local function wake(prefix, queue, id, now, cause, record)
  local rk = K.run(prefix, id)
  local f = redis.call('HMGET', rk, 'status', 'job', 'group', 'priority')
  if f[1] ~= 'scheduled' and f[1] ~= 'waiting' then return false end
  if f[1] == 'waiting' then
    settle_wait(prefix, rk, id, now, cause, record)
    make_ready(prefix, rk, id, f[2], queue, f[3], f[4], f[1], now, 'resumed', {by = cause})
  else
    make_ready(prefix, rk, id, f[2], queue, f[3], f[4], f[1], now, 'queued', nil)
  end
  return true
end
