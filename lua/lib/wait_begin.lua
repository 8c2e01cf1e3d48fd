-- wait_begin: the first check of every wait script (sleep, wait_event, invoke). Returns
-- the check_lease() fields, or nil and the reply to send: {'parked'} when this attempt has
-- parked the run already (a wait call that came after the park, or re-sent after a lost
-- reply), {'done', record} when the step has its record, {'pending', child id or nil} when
-- its wait is registered (a re-sent call), or an error reply (LEASE_LOST).
-- @include check_lease.lua
-- @include parked_by.lua
local function wait_begin(rk, id, token, step)
  local f, err = check_lease(rk, id, token)
  if not f then
    if parked_by(rk, token) then return nil, {'parked'} end
    return nil, redis.error_reply(err)
  end
  local rec = redis.call('HGET', rk, 's:' .. step)
  if rec then return nil, {'done', rec} end
  local w = redis.call('HGET', rk, 'w:' .. step)
  if w then return nil, {'pending', cjson.decode(w).c} end
  return f
end
