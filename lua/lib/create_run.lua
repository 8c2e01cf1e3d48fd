-- create_run: write a new run's hash and make it ready now, or schedule it at `due`.
-- fields: extra hash fields (parent, parent_step, event, idem_key, group, priority, ...).
-- Returns the new status.
-- @include keys.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include make_ready.lua
local function create_run(prefix, id, job, queue, payload, now, due, fields)
  local rk = K.run(prefix, id)
  redis.call('HSET', rk, 'job', job, 'queue', queue, 'payload', payload, 'created', now,
    'attempts', 0)
  for f, v in pairs(fields) do redis.call('HSET', rk, f, v) end
  if due > now then
    redis.call('ZADD', K.delayed(prefix, queue), due, id)
    redis.call('HINCRBY', K.queue_stat(prefix, queue), 'scheduled', 1)
    timeline(rk, now, 'scheduled', {due = due})
    set_status(prefix, rk, id, job, nil, 'scheduled', now, 0)
    return 'scheduled'
  end
  make_ready(prefix, rk, id, job, queue, fields['group'], fields['priority'], nil, now,
    'queued', nil)
  return 'queued'
end
