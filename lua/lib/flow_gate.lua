-- flow_gate: the start-side rules that can refuse a new run, checked before it is created:
-- RateLimit (plan.r = [key id, period ms, limit]: at most `limit` runs created in any
-- `period`, sliding window in keys.rate_limit) and Singleton (plan.o = [key id, mode]: an
-- unfinished run of the key skips the start, or with mode 'cancel' is cancelled). Returns
-- nil (go on) or the skip reason 'rate_limited' | 'singleton'. Writes nothing on a skip.
-- @include keys.lua
-- @include cancel_run.lua
local function flow_gate(prefix, job, plan, id, now, keep)
  local r = plan['r']
  if r then
    local key = K.rate_limit(prefix, job, r[1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - r[2])
    if redis.call('ZCARD', key) >= r[3] then return 'rate_limited' end
  end
  local o = plan['o']
  if o then
    local old = redis.call('GET', K.singleton(prefix, job, o[1]))
    if old then
      local st = redis.call('HGET', K.run(prefix, old), 'status')
      if st and st ~= 'completed' and st ~= 'failed' and st ~= 'cancelled' then
        if o[2] ~= 'cancel' then return 'singleton' end
        cancel_run(prefix, old, 'replaced by run ' .. id .. ' (singleton)', now, keep)
      end
    end
  end
  return nil
end
