-- unregister_wait: remove one pending wait w:<step> of a run (decoded meta `w`): its event
-- registration (waiter set member '<run id>|<step>'), the field and the run's count.
-- @include keys.lua
local function unregister_wait(prefix, rk, id, step, w)
  if w.k == 'event' then
    redis.call('SREM', K.event_waiters(prefix, w.e, w.s, w.v), id .. '|' .. step)
    local shapes = K.event_shapes(prefix, w.e)
    if redis.call('HINCRBY', shapes, w.s, -1) <= 0 then redis.call('HDEL', shapes, w.s) end
  end
  redis.call('HDEL', rk, 'w:' .. step)
  if redis.call('HINCRBY', rk, 'wait_n', -1) <= 0 then redis.call('HDEL', rk, 'wait_n') end
end
