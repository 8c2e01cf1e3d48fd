-- cancel_run: cancel a run. Queued, scheduled and waiting runs end at once (ready entry,
-- waiters and timers removed; a child it waits for is cancelled too, down to 32 levels); a
-- running run gets a cancel flag and stops at its next step (workers learn of it from K.ctl).
-- Returns {status after the call, 1 if this call cancelled or flagged it else 0}, or nil
-- when there is no such run. Called by cancel, fire_schedule (overlap "cancel_other"),
-- flow_gate (singleton "cancel") and cancel_on_event (CancelOn).
-- @include keys.lua
-- @include timeline.lua
-- @include drop_wait.lua
-- @include unready.lua
-- @include finish_run.lua
local function cancel_run(prefix, id, reason, now, keep)
  local rk = K.run(prefix, id)
  local first = nil
  local changed = 0
  for _ = 1, 32 do
    local w = redis.call('HMGET', rk, 'wait_kind', 'wait_step', 'wait_event', 'wait_shape',
      'wait_values', 'queue', 'status', 'job', 'wait_child', 'group')
    local status = w[7]
    if not status then break end
    local child = nil
    local final = status == 'completed' or status == 'failed' or status == 'cancelled'
    if first == nil and not final then changed = 1 end
    if status == 'running' then
      redis.call('HSET', rk, 'cancel', reason)
      redis.call('XADD', K.ctl(prefix), 'MAXLEN', '~', '1000', '*', 'cancel', id)
      timeline(rk, now, 'cancel_requested', {reason = reason})
    elseif status == 'queued' or status == 'scheduled' or status == 'waiting' then
      if w[1] == 'child' then child = w[9] end
      if status == 'queued' then
        unready(prefix, id, w[6], w[10])
      else -- the queue's counter of scheduled or waiting runs (see make_ready)
        redis.call('HINCRBY', K.qstat(prefix, w[6]), status, -1)
      end
      drop_wait(prefix, rk, id, w)
      local err = cjson.encode({type = 'RunCancelled', message = reason, traceback = ''})
      finish_run(prefix, rk, id, w[8], status, 'cancelled', now, keep, {error = err},
        {reason = reason}, nil)
      status = 'cancelled'
    end
    first = first or status
    if not child then break end
    id, rk = child, K.run(prefix, child)
  end
  if not first then return nil end
  return {first, changed}
end
