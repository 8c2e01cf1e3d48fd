-- publish_defs: a starting worker publishes the definitions of the jobs it registers (the
-- highest version's rules, see stackshift_redis/_core/definitions.py). A definition that
-- differs from the stored one replaces it and bumps the revision '#rev', which every
-- script creating runs checks (lib/defs_rev.lua): callers then reload their cache.
-- KEYS[1] defs  keys.defs()  HASH job -> definition JSON; q|job, p|job, v|job; #rev
-- ARGV[1] definitions JSON [[job, definition JSON, queue, key-less plan or '', version], ...]
-- Returns the revision after publishing.
-- Cost: O(jobs): one HGET per job, four HSET and one HINCRBY for each change.
local changed = false
for _, d in ipairs(cjson.decode(ARGV[1])) do
  local job = d[1]
  if redis.call('HGET', KEYS[1], job) ~= d[2] or
      redis.call('HGET', KEYS[1], 'v|' .. job) ~= tostring(d[5]) then
    redis.call('HSET', KEYS[1], job, d[2], 'q|' .. job, d[3], 'v|' .. job, d[5])
    if d[4] ~= '' then
      redis.call('HSET', KEYS[1], 'p|' .. job, d[4])
    else
      redis.call('HDEL', KEYS[1], 'p|' .. job)
    end
    changed = true
  end
end
if changed then return redis.call('HINCRBY', KEYS[1], '#rev', 1) end
return redis.call('HGET', KEYS[1], '#rev') or '0'
