-- release_unserved: make up to `limit` runs held in K.unserved(job, ver) ready again (a
-- worker registering that version is live); held runs that are no longer queued (cancelled
-- meanwhile: cancel_run unmarked and uncounted them) just leave the set. Returns how many
-- were made ready.
-- @include keys.lua
-- @include make_ready.lua
-- @include unhold_unserved.lua
local function release_unserved(prefix, job, ver, now, limit)
  local hk = K.unserved(prefix, job, ver)
  local n = 0
  for _, id in ipairs(redis.call('ZRANGE', hk, 0, limit - 1)) do
    redis.call('ZREM', hk, id)
    local rk = K.run(prefix, id)
    local f = redis.call('HMGET', rk, 'status', 'queue', 'group', 'priority', 'unsv')
    if f[1] == 'queued' and f[5] then
      unhold_unserved(prefix, rk, f[2])
      make_ready(prefix, rk, id, job, f[2], f[3], f[4], 'queued', now, 'requeued',
        {reason = 'a worker serves version ' .. ver})
      n = n + 1
    end
  end
  return n
end
