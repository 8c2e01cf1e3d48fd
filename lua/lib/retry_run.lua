-- retry_run: make a failed or cancelled run ready again (retry.lua, bulk.lua): its completed
-- steps are reused, its retries and deliveries start afresh, its key no longer expires (nor
-- its output stream, when it has one). f = {status, job, queue, group, priority} and `out`
-- (the run's out field) as read by the caller.
-- @include keys.lua
-- @include make_ready.lua
local function retry_run(prefix, rk, id, f, now, out)
  redis.call('HSET', rk, 'fails', 0, 'deliveries', 0)
  redis.call('HDEL', rk, 'finished', 'error')
  redis.call('PERSIST', rk)
  if out then redis.call('PERSIST', K.output(prefix, id)) end
  make_ready(prefix, rk, id, f[2], f[3], f[4], f[5], f[1], now, 'retried', nil)
end
