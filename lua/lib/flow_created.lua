-- flow_created: note a new run in its rules' state: the rate-limit window, the singleton
-- key (`sgl` field: released by flow_done), the debounce burst (`deb_first`), and its
-- CancelOn registrations. The run's group and slots were stored by create_run.
-- @include keys.lua
-- @include watch_cancel.lua
local function flow_created(prefix, job, rk, id, plan, now, due)
  local r = plan['r']
  if r then
    local key = K.rate_limit(prefix, job, r[1])
    redis.call('ZADD', key, now, id)
    redis.call('PEXPIRE', key, r[2])
  end
  if plan['o'] then
    local key = K.singleton(prefix, job, plan['o'][1])
    redis.call('SET', key, id)
    redis.call('HSET', rk, 'sgl', key)
  end
  if plan['d'] then
    redis.call('SET', K.debounce(prefix, job, plan['d'][1]), id, 'PX', due - now + 60000)
    redis.call('HSET', rk, 'deb_first', now)
  end
  if plan['c'] then watch_cancel(prefix, rk, id, plan['c'], now) end
end
