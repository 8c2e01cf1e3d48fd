-- unready: remove a queued run from its group's ready set (cancel); an emptied group
-- leaves the ring when a take next reaches it.
-- @include keys.lua
local function unready(prefix, id, queue, group)
  if redis.call('ZREM', K.ready(prefix, queue, group or '0'), id) == 1 then
    redis.call('HINCRBY', K.qstat(prefix, queue), 'ready', -1)
  end
end
