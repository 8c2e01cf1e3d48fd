-- throttle_at: reserve a start time for a new run of a throttled key (GCRA): with emission
-- interval T = period / limit and tolerance burst * T, runs start at most `limit` (+ `burst`)
-- per `period`, in order of creation; returns the start time (>= due). t = [key id,
-- period ms, limit, burst]. keys.throttle holds the theoretical arrival time (TAT).
-- @include keys.lua
local function throttle_at(prefix, job, t, due)
  local key = K.throttle(prefix, job, t[1])
  local interval = t[2] / t[3]
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), due)
  local at = math.max(due, math.ceil(tat - t[4] * interval))
  local nxt = tat + interval
  redis.call('SET', key, string.format('%.3f', nxt), 'PX', math.ceil(nxt - due + t[2]))
  return at
end
