-- register_part: with partitions (P > 1), a live worker's heartbeat on one partition (the
-- namespace-wide part is register.lua): each job version it registers joins the
-- partition's copy of K.job_versions(job) with this expiry (expired versions leave it), so
-- lib/pick_version.lua pins that partition's new runs to live versions, and runs held
-- there for the version (K.unserved, lib/hold_unserved.lua) are made ready, up to 100 per
-- version and call.
-- KEYS[i] keys.job_versions(job_i) of the partition, one per job below
-- ARGV[1] prefix (the partition's)  ARGV[2] ttl_ms  ARGV[3] JSON [[job, [version, ...]], ...]
-- Returns the number of held runs made ready.
-- Cost: O(versions + released runs).
-- @include keys.lua
-- @include now_ms.lua
-- @include release_unserved.lua
local prefix = ARGV[1]
local now = now_ms()
local expiry = now + tonumber(ARGV[2])
local released = 0
for i, jv in ipairs(cjson.decode(ARGV[3])) do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  for _, v in ipairs(jv[2]) do
    redis.call('ZADD', KEYS[i], 'GT', expiry, v)
    released = released + release_unserved(prefix, jv[1], tostring(v), now, 100)
  end
end
return released
