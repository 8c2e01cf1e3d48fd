-- pick_version: the version a new run of `job` is pinned to: `want` when given (> 0), else
-- the highest version a live worker registers (keys.job_versions, by heartbeat expiry),
-- else the highest version last published (keys.defs() 'v|<job>'), else 1.
-- Cost: one ZRANGEBYSCORE (a job's versions: a few members), one HGET when none is live.
-- @include keys.lua
local function pick_version(prefix, job, want, now)
  if want > 0 then return want end
  local best = 0
  for _, v in ipairs(redis.call('ZRANGEBYSCORE', K.job_versions(prefix, job), now, '+inf')) do
    best = math.max(best, tonumber(v))
  end
  if best > 0 then return best end
  return tonumber(redis.call('HGET', K.defs(prefix), 'v|' .. job) or '1')
end
