-- minute_counts: count a run that finished as completed or failed in its queue's
-- per-minute buckets, drawn by the dashboard's overview chart: K.minutes(queue) HASH
-- '<epoch minute>:c' | '<epoch minute>:f' -> runs. Bounded without a scan: the first count
-- of a minute sets the hash's TTL to 61 minutes (a hash with no new minute for that long
-- holds nothing younger than an hour) and deletes the fields of minutes 61..180 ago.
-- Cost per finished run: one HINCRBY; once per minute per queue and outcome also one PEXPIRE
-- and one HDEL (240 fields named, most absent).
-- @include keys.lua
local function minute_counts(prefix, queue, status, now)
  local key = K.minutes(prefix, queue)
  local m = math.floor(now / 60000)
  local tag = ':f'
  if status == 'completed' then tag = ':c' end
  if redis.call('HINCRBY', key, m .. tag, 1) == 1 then
    redis.call('PEXPIRE', key, 3660000)
    local old = {}
    for i = 61, 180 do
      old[#old + 1] = (m - i) .. ':c'
      old[#old + 1] = (m - i) .. ':f'
    end
    redis.call('HDEL', key, unpack(old))
  end
end
