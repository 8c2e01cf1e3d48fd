-- suspend_run: end a running attempt by parking the run as waiting; no worker slot is held.
-- fields: wait fields (wk kind, ws step, wtim/wrec/wfail records, ...); due: timer ms, 0 = none.
-- @include key.lua
-- @include timeline.lua
-- @include set_status.lua
local function suspend_run(prefix, rk, id, job, queue, now, due, fields)
  redis.call('ZREM', key(prefix, 'q', queue, 'leases'), id)
  redis.call('HDEL', rk, 'token')
  redis.call('HSET', rk, 'deliv', 0)
  for f, v in pairs(fields) do redis.call('HSET', rk, f, v) end
  local extra = {step = fields['ws'], kind = fields['wk']}
  if due > 0 then
    redis.call('ZADD', key(prefix, 'q', queue, 'delayed'), due, id)
    extra['until'] = due
  end
  timeline(rk, now, 'waiting', extra)
  set_status(prefix, rk, id, job, 'running', 'waiting', now, 0)
end
