-- unpark: a slot has a free place: put the group parked longest on it (keys.parked) back on
-- its queue's ring with a ticket. Entries whose ready set is empty now (their runs were
-- cancelled) are dropped on the way, up to 16.
-- @include keys.lua
-- @include ticket.lua
local function unpark(prefix, pk)
  for _ = 1, 16 do
    local m = redis.call('ZPOPMIN', pk)
    if not m[1] then return end
    local sp = string.find(m[1], ' ', 1, true)
    local queue, group = string.sub(m[1], 1, sp - 1), string.sub(m[1], sp + 1)
    if redis.call('EXISTS', K.ready(prefix, queue, group)) == 1 then
      local seq = redis.call('HINCRBY', K.queue_stat(prefix, queue), 'seq', 1)
      redis.call('ZADD', K.ring(prefix, queue), 'NX', seq, group)
      ticket(prefix, queue)
      return
    end
  end
end
