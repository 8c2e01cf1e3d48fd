-- wake: a queue's delayed entry of run `id` is due (promote): a scheduled run becomes
-- ready; a waiting run has its earliest timer (and any other due by now) settled (see
-- settle_step) and resumes. Returns true when the run was made ready.
-- @include keys.lua
-- @include adopt_wait.lua
-- @include pending_waits.lua
-- @include settle_step.lua
-- @include make_ready.lua
-- @include resume_waiting.lua
local function wake(prefix, queue, id, now)
  local rk = K.run(prefix, id)
  local f = redis.call('HMGET', rk, 'status', 'job', 'group', 'priority')
  if f[1] == 'scheduled' then
    make_ready(prefix, rk, id, f[2], queue, f[3], f[4], 'scheduled', now, 'queued', nil)
    return true
  end
  if f[1] ~= 'waiting' then return false end
  -- the entry is due, so the earliest timer is (its due time is the entry's score); any
  -- other timer due by now settles with it
  local timers, first = {}, nil
  local waits = pending_waits(rk)
  if #waits == 0 and adopt_wait(prefix, rk, id) then -- parked by an older version
    waits = pending_waits(rk)
  end
  for _, p in ipairs(waits) do
    if p[2].d > 0 then
      timers[#timers + 1] = p
      if not first or p[2].d < first then first = p[2].d end
    end
  end
  if not first then return false end
  for _, p in ipairs(timers) do
    if p[2].d <= math.max(now, first) then
      settle_step(prefix, rk, id, p[1], 'timer', nil, now, nil)
    end
  end
  return resume_waiting(prefix, rk, id, now, 'timer')
end
