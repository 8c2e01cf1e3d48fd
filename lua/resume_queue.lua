-- resume_queue: resume a paused queue and wake its workers: one ticket per ready run, at
-- most `max` (a woken worker takes as many runs as it has free slots, in order).
-- KEYS[1] conf  keys.queue_conf(queue)  HASH field paused
-- KEYS[2] ring  keys.ring(queue)        ZSET groups with ready runs
-- Derived (K): ready sets K.ready(queue, group), the stream K.stream(queue) (ticket()).
-- ARGV[1] prefix  ARGV[2] queue  ARGV[3] max tickets
-- Returns 1 when this call resumed the queue, 0 when it was not paused.
-- @include keys.lua
-- @include ticket.lua
local prefix, queue, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('HDEL', KEYS[1], 'paused') == 0 then return 0 end
local ready = 0
for _, group in ipairs(redis.call('ZRANGE', KEYS[2], 0, max - 1)) do
  ready = ready + redis.call('ZCARD', K.ready(prefix, queue, group))
  if ready >= max then break end
end
for _ = 1, math.min(ready, max) do ticket(prefix, queue) end
return 1
