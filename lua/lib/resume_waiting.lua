-- resume_waiting: make a waiting run ready again (one of its waits settled: by = cause);
-- its timer entry goes (the next park sets it again). Returns true when it was waiting.
-- @include keys.lua
-- @include make_ready.lua
local function resume_waiting(prefix, rk, id, now, cause)
  local f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'group', 'priority')
  if f[1] ~= 'waiting' then return false end
  redis.call('ZREM', K.delayed(prefix, f[3]), id)
  make_ready(prefix, rk, id, f[2], f[3], f[4], f[5], 'waiting', now, 'resumed', {by = cause})
  return true
end
