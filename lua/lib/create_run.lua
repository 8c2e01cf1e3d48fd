-- create_run: write a new run's hash and enqueue it (stream now, or schedule at `due`).
-- fields: extra hash fields (parent, pstep, evt, ...). Returns the new status.
-- @include key.lua
-- @include timeline.lua
-- @include set_status.lua
local function create_run(prefix, id, job, queue, payload, now, due, fields)
  local rk = key(prefix, 'run', id)
  redis.call('HSET', rk, 'job', job, 'queue', queue, 'payload', payload, 'created', now,
    'attempts', 0)
  for f, v in pairs(fields) do redis.call('HSET', rk, f, v) end
  local status = 'queued'
  if due > now then
    status = 'scheduled'
    redis.call('ZADD', key(prefix, 'q', queue, 'delayed'), due, id)
    timeline(rk, now, 'scheduled', {due = due})
  else
    redis.call('XADD', key(prefix, 'q', queue, 'stream'), '*', 'r', id)
    timeline(rk, now, 'queued')
  end
  set_status(prefix, rk, id, job, nil, status, now, 0)
  return status
end
