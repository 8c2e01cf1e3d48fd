-- leased_again: the take reply for a run this same take call already leased (a take
-- re-sent by the client after its reply was lost), or nil when the lease is gone. The wait
-- since ready is measured to `now` (this call), not to the first take.
-- @include keys.lua
-- @include split_run.lua
-- @include resumed.lua
-- @include ready_wait.lua
local function leased_again(prefix, id, token, now)
  local rk = K.run(prefix, id)
  local v, steps, hooked, waits, tl = split_run(redis.call('HGETALL', rk))
  if v['status'] ~= 'running' or v['token'] ~= token then return nil end
  local n = tonumber(v['tl_len']) or 1
  local was_resumed, last = resumed(tl['t:' .. (n - 1)])
  local waited, by = ready_wait(last, now)
  return {id, 'ok', token, tonumber(v['attempts']) or 1, v['job'], v['payload'],
    v['event'] or '', steps, v['fails'] or '0', was_resumed, hooked,
    v['schedule'] or '', v['scheduled_at'] or '', waited, by, waits, v['ver'] or '1'}
end
