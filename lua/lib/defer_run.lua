-- defer_run: a popped run its throttle does not admit yet goes back to the schedule
-- (queued -> scheduled, counted in the queue's `scheduled`) until `due`; promote makes it
-- ready again then.
-- @include keys.lua
-- @include timeline.lua
-- @include set_status.lua
local function defer_run(prefix, queue, id, due, now)
  local rk = K.run(prefix, id)
  redis.call('ZADD', K.delayed(prefix, queue), due, id)
  redis.call('HINCRBY', K.queue_stat(prefix, queue), 'scheduled', 1)
  timeline(rk, now, 'throttled', {due = due})
  set_status(prefix, rk, id, redis.call('HGET', rk, 'job'), 'queued', 'scheduled', now, 0)
end
