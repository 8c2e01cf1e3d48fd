-- unready: remove a queued run from its group's ready set (cancel); an emptied group
-- leaves the ring when a take next reaches it. When the run was its group's last, each of
-- the run's Concurrency slots with room wakes a group parked on it: the wake-up that put
-- this group back on the ring may have been meant for the run (see admit_run).
-- @include keys.lua
-- @include unpark.lua
local function unready(prefix, id, queue, group)
  local rset = K.ready(prefix, queue, group or '0')
  if redis.call('ZREM', rset, id) == 1 then
    redis.call('HINCRBY', K.queue_stat(prefix, queue), 'ready', -1)
  end
  if (group or '0') == '0' or redis.call('EXISTS', rset) == 1 then return end
  local f = redis.call('HMGET', K.run(prefix, id), 'slots', 'job')
  if not f[1] then return end
  for _, s in ipairs(cjson.decode(f[1])) do
    if redis.call('SCARD', K.slot(prefix, f[2], s[1])) < s[2] then
      unpark(prefix, K.parked(prefix, f[2], s[1]))
    end
  end
end
