-- drop_wait: remove a waiting run's event registration, timer and wait fields.
-- w = {wk, ws, we, wsh, wv, queue}.
-- @include key.lua
local function drop_wait(prefix, rk, id, w)
  if w[1] == 'event' and w[3] then
    redis.call('SREM', key(prefix, 'ev', w[3], 'w', w[4], w[5]), id)
    local shapes = key(prefix, 'ev', w[3], 'shapes')
    if redis.call('HINCRBY', shapes, w[4], -1) <= 0 then redis.call('HDEL', shapes, w[4]) end
  end
  redis.call('ZREM', key(prefix, 'q', w[6], 'delayed'), id)
  redis.call('HDEL', rk, 'wk', 'ws', 'wtim', 'wrec', 'wfail', 'we', 'wsh', 'wv', 'wc')
end
