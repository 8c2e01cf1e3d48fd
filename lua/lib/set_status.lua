-- set_status: set a live run's status and move it between status indexes.
-- (A final run made live again must PERSIST its key: see retry.lua; finals use finish_run.)
-- @include move_index.lua
local function set_status(prefix, rk, id, job, old, new, now, keep_ms)
  move_index(prefix, id, job, old, new, now, keep_ms)
  redis.call('HSET', rk, 'status', new)
  if keep_ms > 0 then redis.call('PEXPIRE', rk, keep_ms) end
end
