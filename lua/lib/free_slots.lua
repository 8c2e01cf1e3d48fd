-- free_slots: give back the Concurrency slot places a run holds (its lease ended: complete,
-- fail, suspend, reclaim, poison); each place freed wakes one group parked on that slot.
-- Idempotent: a run that holds no place frees nothing. pre: check_lease() fields (its
-- `slots` and `job` read already), or nil.
-- @include keys.lua
-- @include unpark.lua
local function free_slots(prefix, id, pre)
  local f
  if pre then
    f = {pre[11], pre[2]}
  else
    f = redis.call('HMGET', K.run(prefix, id), 'slots', 'job')
  end
  if not f[1] then return end
  for _, s in ipairs(cjson.decode(f[1])) do
    if redis.call('SREM', K.slot(prefix, f[2], s[1]), id) == 1 then
      unpark(prefix, K.parked(prefix, f[2], s[1]))
    end
  end
end
