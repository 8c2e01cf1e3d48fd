-- debounce_merge: a start of a debounced key (plan.d = [key id, period ms, timeout ms | 0])
-- while its burst is open (keys.debounce names a run that is scheduled and never ran) joins
-- that run: it takes this start's payload, concurrency group and CancelOn matches, and is
-- put off to `period` after this start (never later than `timeout` after the first start,
-- never earlier than it was due). Returns the run's id, or nil when no burst is open.
-- @include keys.lua
-- @include unwatch_cancel.lua
-- @include watch_cancel.lua
local function debounce_merge(prefix, job, plan, payload, now)
  local d = plan['d']
  local key = K.debounce(prefix, job, d[1])
  local id = redis.call('GET', key)
  if not id then return nil end
  local rk = K.run(prefix, id)
  local f = redis.call('HMGET', rk, 'status', 'attempts', 'queue', 'deb_first', 'cxl')
  if f[1] ~= 'scheduled' or (f[2] and f[2] ~= '0') then return nil end -- it ran
  local delayed = K.delayed(prefix, f[3])
  local due = now + d[2]
  if d[3] > 0 then due = math.min(due, tonumber(f[4]) + d[3]) end
  due = math.max(due, tonumber(redis.call('ZSCORE', delayed, id) or '0'))
  redis.call('ZADD', delayed, due, id)
  redis.call('HSET', rk, 'payload', payload)
  if plan['g'] then redis.call('HSET', rk, 'group', plan['g']) end
  if plan['s'] then redis.call('HSET', rk, 'slots', cjson.encode(plan['s'])) end
  if f[5] then unwatch_cancel(prefix, rk, id, f[5], nil) end
  if plan['c'] then watch_cancel(prefix, rk, id, plan['c'], now) end
  redis.call('PEXPIRE', key, due - now + 60000)
  return id
end
