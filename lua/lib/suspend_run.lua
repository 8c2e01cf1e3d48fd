-- suspend_run: end a running attempt by parking the run as waiting; no worker slot is held.
-- fields: wait fields (wait_kind, wait_step, wait_*_rec records, ...); due: timer ms, 0 = none.
-- @include keys.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include release_lease.lua
local function suspend_run(prefix, rk, id, job, queue, now, due, fields)
  release_lease(prefix, queue, id)
  redis.call('HSET', rk, 'deliveries', 0) -- the token stays: see parked_by
  for f, v in pairs(fields) do redis.call('HSET', rk, f, v) end
  local extra = {step = fields['wait_step'], kind = fields['wait_kind']}
  if due > 0 then
    redis.call('ZADD', K.delayed(prefix, queue), due, id)
    extra['until'] = due
  end
  redis.call('HINCRBY', K.qstat(prefix, queue), 'waiting', 1)
  timeline(rk, now, 'waiting', extra)
  set_status(prefix, rk, id, job, 'running', 'waiting', now, 0)
end
