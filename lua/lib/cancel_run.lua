-- cancel_run: cancel a run. Queued, scheduled and waiting runs end at once (ready entry,
-- waiters and timers removed; the child runs its pending waits are for are cancelled too,
-- and theirs, up to 256 runs in all); a running run gets a cancel flag and stops at its
-- next step (workers learn of it from K.ctl).
-- Returns {status after the call, 1 if this call cancelled or flagged it else 0}, or nil
-- when there is no such run. Called by cancel, fire_schedule (overlap "cancel_other"),
-- flow_gate (singleton "cancel") and cancel_on_event (CancelOn). `id` may also be a list
-- of run ids (fail: the children of a run cancelled while running): all are cancelled,
-- with their children, 256 runs in all, and the reply is the first one's. A child on another
-- partition is cancelled there, through the outbox (lua/apply_outbox.lua).
-- @include keys.lua
-- @include timeline.lua
-- @include adopt_wait.lua
-- @include drop_waits.lua
-- @include unready.lua
-- @include finish_run.lua
-- @include unhold_unserved.lua
-- @include elsewhere.lua
local function cancel_run(prefix, id, reason, now, keep)
  local todo = id
  if type(id) == 'string' then todo = {id} end
  local first, changed = nil, 0
  local i = 1
  while todo[i] and i <= 256 do
    local cid = todo[i]
    local rk = K.run(prefix, cid)
    local w = {}
    if elsewhere(prefix, cid) then -- a child on another partition: cancelled there
      redis.call('XADD', K.outbox(prefix), '*', 'a', 'cancel', 'run', cid, 'reason', reason)
    else
      w = redis.call('HMGET', rk, 'status', 'queue', 'job', 'group', 'unsv')
    end
    local status = w[1]
    if status and i == 1 and status ~= 'completed' and status ~= 'failed' and
        status ~= 'cancelled' then
      changed = 1
    end
    if status == 'running' then
      redis.call('HSET', rk, 'cancel', reason)
      redis.call('XADD', K.control(prefix), 'MAXLEN', '~', '1000', '*', 'cancel', cid)
      timeline(rk, now, 'cancel_requested', {reason = reason})
    elseif status == 'queued' or status == 'scheduled' or status == 'waiting' then
      if status == 'queued' then
        if w[5] then -- held for a version no live worker serves (hold_unserved)
          unhold_unserved(prefix, rk, w[2])
        end
        unready(prefix, cid, w[2], w[4])
      else -- the queue's counter of scheduled or waiting runs (see make_ready)
        redis.call('HINCRBY', K.queue_stat(prefix, w[2]), status, -1)
      end
      redis.call('ZREM', K.delayed(prefix, w[2]), cid)
      adopt_wait(prefix, rk, cid)
      for _, child in ipairs(drop_waits(prefix, rk, cid)) do todo[#todo + 1] = child end
      local err = cjson.encode({type = 'RunCancelled', message = reason, traceback = ''})
      finish_run(prefix, rk, cid, w[3], status, 'cancelled', now, keep, {error = err},
        {reason = reason}, nil)
      status = 'cancelled'
    end
    if i == 1 then first = status end
    i = i + 1
  end
  if not first then return nil end
  return {first, changed}
end
