-- park_group: a group's next run found a Concurrency slot full: put the popped runs from
-- index j on back into the group's ready set (same scores: order kept), take the group off
-- the ring and park it on the slot (pk, keys.parked) until a place frees (unpark). The
-- queue's `ready` counter (stat, keys.queue_stat) counts the entries put back again.
-- @include keys.lua
local function park_group(ring, rset, stat, queue, group, popped, j, pk, now)
  local back = {'ZADD', rset}
  for x = j, #popped, 2 do
    back[#back + 1] = popped[x + 1]
    back[#back + 1] = popped[x]
  end
  redis.call('HINCRBY', stat, 'ready', redis.call(unpack(back)))
  redis.call('ZREM', ring, group)
  redis.call('ZADD', pk, 'NX', now, queue .. ' ' .. group)
end
