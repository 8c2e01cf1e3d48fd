-- trim: drop index entries of finished runs older than the retention (their run hashes
-- expired) and notifications older than a minute; bounded per key, so memory returns to
-- its baseline once traffic stops.
-- KEYS[1] done  keys.done()     STREAM finished-run notifications
-- KEYS[2] ctl   keys.control()  STREAM cancel notices
-- KEYS[1+2i] index  keys.idx_status(final) / keys.idx_job_status(job, final)  ZSET by time
-- KEYS[2+2i] ids    keys.ord_status(final) / keys.ord_job_status(job, final)  ZSET by id:
--                   the same runs in creation order (paging); trimmed with the index
-- ARGV[1] retention_ms  ARGV[2] limit per index  ARGV[3] notification keep ms
-- Returns the number of index entries removed.  Cost: O(limit * indexes).
-- @include now_ms.lua
local now = now_ms()
local horizon = string.format('%d', now - tonumber(ARGV[1]))
local limit = tonumber(ARGV[2])
local removed = 0
local i = 3
while KEYS[i] do
  local old = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', horizon, 'LIMIT', 0, limit)
  if #old > 0 then
    redis.call('ZREM', KEYS[i], unpack(old))
    redis.call('ZREM', KEYS[i + 1], unpack(old))
    removed = removed + #old
  end
  i = i + 2
end
local minid = string.format('%d', now - tonumber(ARGV[3]))
redis.call('XTRIM', KEYS[1], 'MINID', minid)
redis.call('XTRIM', KEYS[2], 'MINID', minid)
return removed
