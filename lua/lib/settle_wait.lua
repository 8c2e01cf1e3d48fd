-- settle_wait: end a waiting run's pending step and record its outcome as the step's result.
-- cause 'timer': sleep done or timed out (record: wait_timeout_rec, made whole by Python);
-- 'event' / 'child_ok': value = serialized bytes (record: wait_ok_rec .. bin(value));
-- 'child_failed': value = error text (record: wait_fail_rec .. str(value)).
-- @include keys.lua
-- @include timeline.lua
-- @include mp_pack.lua
-- @include drop_wait.lua
local function settle_wait(prefix, rk, id, now, cause, value)
  local w = redis.call('HMGET', rk, 'wait_kind', 'wait_step', 'wait_timeout_rec',
    'wait_ok_rec', 'wait_fail_rec', 'wait_event', 'wait_shape', 'wait_values', 'queue')
  local kind, step = w[1], w[2]
  if not kind then return end
  local record, entry
  if cause == 'timer' then
    record, entry = w[3], 'timed_out'
    if kind == 'sleep' then entry = 'sleep_done' end
  elseif cause == 'event' then
    record, entry = w[4] .. mp_pack(value, true), 'event_received'
  elseif cause == 'child_ok' then
    record, entry = w[4] .. mp_pack(value, true), 'child_completed'
  else
    record, entry = w[5] .. mp_pack(value, false), 'child_failed'
  end
  drop_wait(prefix, rk, id, {kind, step, w[6], w[7], w[8], w[9]})
  redis.call('HSET', rk, 's:' .. step, record)
  timeline(rk, now, entry, {step = step})
end
