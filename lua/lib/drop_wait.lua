-- drop_wait: remove a waiting run's event registration, timer and wait fields.
-- w = {wait_kind, wait_step, wait_event, wait_shape, wait_values, queue}.
-- @include keys.lua
local function drop_wait(prefix, rk, id, w)
  if w[1] == 'event' and w[3] then
    redis.call('SREM', K.event_waiters(prefix, w[3], w[4], w[5]), id)
    local shapes = K.event_shapes(prefix, w[3])
    if redis.call('HINCRBY', shapes, w[4], -1) <= 0 then redis.call('HDEL', shapes, w[4]) end
  end
  redis.call('ZREM', K.delayed(prefix, w[6]), id)
  redis.call('HDEL', rk, 'wait_kind', 'wait_step', 'wait_timeout_rec', 'wait_ok_rec',
    'wait_fail_rec', 'wait_event', 'wait_shape', 'wait_values', 'wait_child')
end
