-- unregister_job: forget a job in the shared registry now: its job -> queue entry and every
-- on_event trigger of it (a live worker that still registers the job publishes it again
-- at its next heartbeat), and its published definition (keys.defs(): the revision is
-- bumped; a live worker that registers the job publishes it again when it starts).
-- KEYS[1] owners  keys.owners()  ZSET entry -> expiry ms of its latest registration
-- KEYS[2] jobs    keys.jobs()    HASH job -> queue
-- KEYS[3] defs    keys.defs()    HASH job -> definition JSON (and q|, p|, v|<job>; #rev)
-- Derived (K): K.triggers(event) of the job's triggers.
-- ARGV[1] prefix  ARGV[2] job
-- Returns the number of entries removed (job map entry and triggers).
-- Cost: O(registry entries), at most 5000 examined.
-- @include keys.lua
local prefix, job = ARGV[1], ARGV[2]
local removed = redis.call('HDEL', KEYS[2], job)
if redis.call('HDEL', KEYS[3], job, 'q|' .. job, 'p|' .. job, 'v|' .. job) > 0 then
  redis.call('HINCRBY', KEYS[3], '#rev', 1)
end
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], 0, 4999)) do
  local p = {}
  for part in string.gmatch(entry, '[^\31]+') do p[#p + 1] = part end
  if p[1] == 'j' and p[2] == job then
    redis.call('ZREM', KEYS[1], entry)
  elseif p[1] == 't' and p[3] == job then
    removed = removed + redis.call('HDEL', K.triggers(prefix, p[2]), job)
    redis.call('ZREM', KEYS[1], entry)
  end
end
return removed
