-- check_lease: the run's {status, job, queue, token, tl_len, awaited, parent, wait_n, out,
-- cancel, slots, cxl, sgl} if `token` still holds it, else nil and a LEASE_LOST message for
-- redis.error_reply. (slots, cxl and sgl: so that finishing reads the run hash once.)
-- `extra` (may be nil): one more field to read, returned as f[14].
local function check_lease(rk, id, token, extra)
  local f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'token', 'tl_len', 'awaited',
    'parent', 'wait_n', 'out', 'cancel', 'slots', 'cxl', 'sgl', extra or 'status')
  if f[1] ~= 'running' or f[4] ~= token then
    return nil, 'LEASE_LOST run=' .. id .. ' status=' .. tostring(f[1])
  end
  return f
end
