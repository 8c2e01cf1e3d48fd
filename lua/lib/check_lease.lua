-- check_lease: the run's {status, job, queue, token, tn, w, parent} if `token` still holds
-- it, else a LEASE_LOST error.
local function check_lease(rk, id, token)
  local f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'token', 'tn', 'w', 'parent')
  if f[1] ~= 'running' or f[4] ~= token then
    return error({err = 'LEASE_LOST run=' .. id .. ' status=' .. tostring(f[1])})
  end
  return f
end
