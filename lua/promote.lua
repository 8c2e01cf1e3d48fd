-- promote: make due runs of a queue's schedule ready (bounded batch, server clock).
-- KEYS[1] delayed  keys.delayed(queue)  ZSET run id -> due ms
-- ARGV[1] prefix  ARGV[2] queue  ARGV[3] limit
-- Returns {promoted count, ms until the next due run or -1 when none}.
-- @include keys.lua
-- @include now_ms.lua
-- @include wake.lua
local prefix, queue = ARGV[1], ARGV[2]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local moved = 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  if wake(prefix, queue, id, now) then moved = moved + 1 end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if nxt[2] then wait = math.max(0, tonumber(nxt[2]) - now) end
return {moved, wait}
