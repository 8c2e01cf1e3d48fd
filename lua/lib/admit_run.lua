-- admit_run: the take-side rules for a run popped from a flow-controlled group, checked
-- before it is leased. Concurrency: a place in each of its slots (keys.slot: a SET of
-- holder run ids, at most `limit`; the run's `slots` field is JSON [[slot id, limit], ...]).
-- Throttle: fewer than `cap` starts of its key within the last `period` (keys.throttle_log;
-- `thr` field JSON [key id, period ms, cap = limit + burst]); start times were already
-- spaced at creation (throttle_at), this absorbs the workers' timing jitter.
-- Returns nil when the run may be leased (its places are taken and its start noted; also
-- when it has no rules or is no longer queued), 'park', key of the first full slot's parked
-- set (keys.parked: its group waits there), or 'later', the earliest ms its throttle allows.
-- A full slot checks one holder at random and drops it when it is not running (a place
-- can only leak through lost writes, e.g. a failover): a leak is repaired over a few takes.
-- A blocked run's other slots that have room wake a group parked on them: the wake-up that
-- brought this group here may have been meant for them.
-- @include keys.lua
-- @include unpark.lua
local function admit_run(prefix, id, now)
  local f = redis.call('HMGET', K.run(prefix, id), 'slots', 'job', 'status', 'thr')
  if f[3] ~= 'queued' or not (f[1] or f[4]) then return nil end
  local slots = {}
  if f[1] then slots = cjson.decode(f[1]) end
  local full = nil
  for _, s in ipairs(slots) do
    local sk = K.slot(prefix, f[2], s[1])
    if redis.call('SCARD', sk) >= s[2] then -- full: one holder, at random, is checked
      local h = redis.call('SRANDMEMBER', sk)
      if h and redis.call('HGET', K.run(prefix, h), 'status') ~= 'running' then
        redis.call('SREM', sk, h) -- a place leaked through lost writes: repaired here
      end
    end
    if redis.call('SCARD', sk) >= s[2] then
      full = K.parked(prefix, f[2], s[1])
      break
    end
  end
  if full then
    for _, s in ipairs(slots) do
      local pk = K.parked(prefix, f[2], s[1])
      if pk ~= full and redis.call('SCARD', K.slot(prefix, f[2], s[1])) < s[2] then
        unpark(prefix, pk)
      end
    end
    return 'park', full
  end
  if f[4] then
    local t = cjson.decode(f[4])
    local log = K.throttle_log(prefix, f[2], t[1])
    redis.call('ZREMRANGEBYSCORE', log, '-inf', now - t[2])
    local recent = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
    if redis.call('ZCARD', log) >= t[3] then return 'later', tonumber(recent[2]) + t[2] end
    redis.call('ZADD', log, now, id)
    redis.call('PEXPIRE', log, t[2])
  end
  for _, s in ipairs(slots) do redis.call('SADD', K.slot(prefix, f[2], s[1]), id) end
  return nil
end
