-- cancel_on_event: an event matched a run's CancelOn registration entry = {event, shape,
-- values key}: cancel the run in any state (running: at its next step), unless the rule's
-- timeout has passed (the registration is dropped then). Returns true when the run was
-- cancelled or flagged.
-- @include keys.lua
-- @include unwatch_cancel.lua
-- @include cancel_run.lua
local function cancel_on_event(prefix, id, entry, eid, now, keep)
  local rk = K.run(prefix, id)
  local cxl = redis.call('HGET', rk, 'cxl')
  if not cxl then return false end
  for _, c in ipairs(cjson.decode(cxl)) do
    if c[1] == entry[1] and c[2] == entry[2] and c[3] == entry[3] then
      if c[4] >= 0 and now > c[4] then
        unwatch_cancel(prefix, rk, id, cxl, entry)
        return false
      end
      local out = cancel_run(prefix, id, 'cancelled by event ' .. entry[1] .. ' ' .. eid, now,
        keep)
      return out ~= nil and out[2] == 1
    end
  end
  return false
end
