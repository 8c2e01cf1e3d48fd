-- watch_cancel: register a run for its CancelOn rules in the events' correlation index, as a
-- waiter named '!<run id>' (send_event cancels it instead of resuming it). entries:
-- [[event, shape, values key, timeout ms | -1], ...]; stored in the run's `cxl` field as
-- [[event, shape, values key, expiry ms | -1], ...] for send_event and unwatch_cancel.
-- @include keys.lua
local function watch_cancel(prefix, rk, id, entries, now)
  local stored = {}
  for _, c in ipairs(entries) do
    redis.call('SADD', K.event_waiters(prefix, c[1], c[2], c[3]), '!' .. id)
    redis.call('HINCRBY', K.event_shapes(prefix, c[1]), c[2], 1)
    local expiry = -1
    if c[4] >= 0 then expiry = now + c[4] end
    stored[#stored + 1] = {c[1], c[2], c[3], expiry}
  end
  redis.call('HSET', rk, 'cxl', cjson.encode(stored))
end
