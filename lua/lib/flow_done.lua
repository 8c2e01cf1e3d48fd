-- flow_done: a run reached a final status: drop its CancelOn registrations and release its
-- singleton key (when the key still names this run). One HMGET for runs without rules,
-- none when `pre` (finish_run's) has them read already (pre.flow).
-- @include keys.lua
-- @include unwatch_cancel.lua
local function flow_done(prefix, rk, id, pre)
  local f
  if pre and pre.flow then
    f = {pre.cxl, pre.sgl}
  else
    f = redis.call('HMGET', rk, 'cxl', 'sgl')
  end
  if f[1] then unwatch_cancel(prefix, rk, id, f[1], nil) end
  if f[2] and redis.call('GET', f[2]) == id then redis.call('DEL', f[2]) end
end
