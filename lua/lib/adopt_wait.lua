-- adopt_wait: a run parked by a version before pending waits (fields wait_kind, wait_step,
-- ...: one wait per run) gets that wait in today's form (see add_wait), so an upgrade
-- loses no waiting run. Returns its step, or nil when the run has no such fields.
-- @include keys.lua
-- @include add_wait.lua
local function adopt_wait(prefix, rk, id)
  local w = redis.call('HMGET', rk, 'wait_kind', 'wait_step', 'wait_event', 'wait_shape',
    'wait_values', 'wait_child', 'wait_timeout_rec', 'wait_ok_rec', 'wait_fail_rec', 'queue')
  if not w[1] or not w[2] then return nil end
  for i = 3, 9 do w[i] = w[i] or nil end -- HMGET gives false for a missing field
  local due = tonumber(redis.call('ZSCORE', K.delayed(prefix, w[10]), id) or '0')
  local recs = {wr_none = w[7], wr_ok = w[8], wr_fail = w[9]}
  if w[1] == 'child' then recs = {wr_child_to = w[7], wr_ok = w[8], wr_fail = w[9]} end
  if w[1] == 'event' then
    redis.call('SREM', K.event_waiters(prefix, w[3], w[4], w[5]), id)
    redis.call('HINCRBY', K.event_shapes(prefix, w[3]), w[4], -1)
  end
  redis.call('HDEL', rk, 'wait_kind', 'wait_step', 'wait_event', 'wait_shape', 'wait_values',
    'wait_child', 'wait_timeout_rec', 'wait_ok_rec', 'wait_fail_rec')
  add_wait(prefix, rk, id, w[2], {k = w[1], d = due, e = w[3], s = w[4], v = w[5], c = w[6]},
    recs)
  return w[2]
end
