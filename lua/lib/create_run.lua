-- create_run: write a new run's hash and make it ready now, or schedule it at `due`.
-- fields: extra hash fields (parent, parent_step, event, idem_key, group, priority, ...).
-- One HSET writes the run whole: its fields, status and first timeline entry (`attempts`
-- is not written: absent reads as 0; a run queued at once has no `t:1` either: its first
-- timeline entry is implied, {type = 'queued', at = created}, see lua/README.md).
-- `first` (may be nil): timeline entries before its queued/scheduled one (a replay's
-- `replay_of`). Returns the new status.
-- @include keys.lua
-- @include move_index.lua
-- @include enqueue.lua
local function create_run(prefix, id, job, queue, payload, now, due, fields, first)
  local rk = K.run(prefix, id)
  local status, entry = 'queued', {type = 'queued', at = now}
  if due > now then status, entry = 'scheduled', {due = due, type = 'scheduled', at = now} end
  local implied = not first and status == 'queued' -- t:1 {queued at created}: not stored
  local entries = first or {}
  entries[#entries + 1] = entry
  local args = {'HSET', rk, 'job', job, 'queue', queue, 'payload', payload, 'created', now,
    'status', status, 'tl_len', #entries}
  for n, e in ipairs(entries) do
    if n > 1 or not implied then
      args[#args + 1] = 't:' .. n
      args[#args + 1] = cjson.encode(e)
    end
  end
  for f, v in pairs(fields) do
    args[#args + 1] = f
    args[#args + 1] = v
  end
  redis.call(unpack(args))
  if status == 'scheduled' then
    redis.call('ZADD', K.delayed(prefix, queue), due, id)
    redis.call('HINCRBY', K.queue_stat(prefix, queue), 'scheduled', 1)
  else
    enqueue(prefix, id, queue, fields['group'], fields['priority'], nil)
  end
  move_index(prefix, id, job, nil, status, now, 0)
  return status
end
