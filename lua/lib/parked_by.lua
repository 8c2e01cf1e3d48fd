-- parked_by: the run's wait_child (or true) when it is already parked at `step` under this
-- lease token: a wait call re-sent by the client after its reply was lost. Else nil.
local function parked_by(rk, token, step)
  local f = redis.call('HMGET', rk, 'status', 'token', 'wait_step', 'wait_child')
  if f[1] == 'waiting' and f[2] == token and f[3] == step then return f[4] or true end
  return nil
end
