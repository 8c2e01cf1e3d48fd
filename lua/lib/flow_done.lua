-- flow_done: a run reached a final status: drop its CancelOn registrations and release its
-- singleton key (when the key still names this run). One HMGET for runs without rules.
-- @include keys.lua
-- @include unwatch_cancel.lua
local function flow_done(prefix, rk, id)
  local f = redis.call('HMGET', rk, 'cxl', 'sgl')
  if f[1] then unwatch_cancel(prefix, rk, id, f[1], nil) end
  if f[2] and redis.call('GET', f[2]) == id then redis.call('DEL', f[2]) end
end
