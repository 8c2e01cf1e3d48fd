-- settle_step: end one pending wait w:<step> of a run and store its outcome as the step's
-- record. cause 'timer': the sleep is over or the wait timed out (record wr_none, or
-- wr_child_to for a child); 'event' / 'child_ok': value = serialized bytes (wr_ok ..
-- bin(value)); 'child_failed': value = error text (wr_fail .. str(value)). child: settle
-- only a wait for that child run (nil: any). Returns true when a wait was settled. The
-- run's status does not change here: see resume_waiting (a running run keeps running).
-- @include timeline.lua
-- @include mp_pack.lua
-- @include unregister_wait.lua
local SETTLED_ENTRY = {event = 'event_received', child_ok = 'child_completed',
  child_failed = 'child_failed'}
local function settle_step(prefix, rk, id, step, cause, value, now, child)
  if not step then return false end
  local raw = redis.call('HGET', rk, 'w:' .. step)
  if not raw then return false end
  local w = cjson.decode(raw)
  if child and w.c ~= child then return false end
  local record, entry = nil, SETTLED_ENTRY[cause]
  if cause == 'timer' then
    record = redis.call('HGET', rk, w.k == 'child' and 'wr_child_to' or 'wr_none')
    entry = w.k == 'sleep' and 'sleep_done' or 'timed_out'
  elseif cause == 'child_failed' then
    record = redis.call('HGET', rk, 'wr_fail') .. mp_pack(value, false)
  else
    record = redis.call('HGET', rk, 'wr_ok') .. mp_pack(value, true)
  end
  unregister_wait(prefix, rk, id, step, w)
  redis.call('HSET', rk, 's:' .. step, record)
  local extra = {step = step}
  if w.c then extra['child'] = w.c end
  timeline(rk, now, entry, extra)
  return true
end
