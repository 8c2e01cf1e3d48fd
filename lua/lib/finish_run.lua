-- finish_run: move a run to a final status, expire it after keep_ms, wake result() waiters,
-- and resume a parent run waiting for it (invoke) with its result or error.
-- @include key.lua
-- @include set_status.lua
-- @include notify_done.lua
-- @include wake.lua
local function finish_run(prefix, rk, id, job, old, new, now, keep_ms)
  redis.call('HSET', rk, 'finished', now)
  redis.call('HDEL', rk, 'token', 'cancel')
  set_status(prefix, rk, id, job, old, new, now, keep_ms)
  notify_done(key(prefix, 'done'), rk, id)
  local parent = redis.call('HGET', rk, 'parent')
  if not parent then return end
  local pk = key(prefix, 'run', parent)
  local p = redis.call('HMGET', pk, 'status', 'wk', 'wc', 'queue')
  if p[1] ~= 'waiting' or p[2] ~= 'child' or p[3] ~= id then return end
  local stream = key(prefix, 'q', p[4], 'stream')
  if new == 'completed' then
    wake(prefix, stream, parent, now, 'child_ok', redis.call('HGET', rk, 'result'))
  else
    local msg = 'child run ' .. id .. ' ' .. new
    local err = redis.call('HGET', rk, 'error')
    if err then msg = msg .. ': ' .. tostring(cjson.decode(err).message) end
    wake(prefix, stream, parent, now, 'child_failed', msg)
  end
end
