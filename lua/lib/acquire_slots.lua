-- acquire_slots: before a popped run is leased, take a place in each of its Concurrency
-- slots (keys.slot: a SET of holder run ids, at most `limit`; the run's `slots` field is
-- JSON [[slot id, limit], ...]). Returns nil when the run may be leased (places taken, or
-- it has no slots, or it is no longer queued), else the parked-set key (keys.parked) of
-- the first full slot, where its group waits for a place. A blocked run's other slots that
-- have room wake a group parked on them: the wake-up that brought this group here may have
-- been meant for them.
-- @include keys.lua
-- @include unpark.lua
local function acquire_slots(prefix, id)
  local f = redis.call('HMGET', K.run(prefix, id), 'slots', 'job', 'status')
  if not f[1] or f[3] ~= 'queued' then return nil end
  local slots = cjson.decode(f[1])
  local full = nil
  for _, s in ipairs(slots) do
    if redis.call('SCARD', K.slot(prefix, f[2], s[1])) >= s[2] then
      full = K.parked(prefix, f[2], s[1])
      break
    end
  end
  if not full then
    for _, s in ipairs(slots) do redis.call('SADD', K.slot(prefix, f[2], s[1]), id) end
    return nil
  end
  for _, s in ipairs(slots) do
    local pk = K.parked(prefix, f[2], s[1])
    if pk ~= full and redis.call('SCARD', K.slot(prefix, f[2], s[1])) < s[2] then
      unpark(prefix, pk)
    end
  end
  return full
end
