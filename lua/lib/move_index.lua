-- move_index: move a run from the status indexes of `old` (may be nil) to those of `new`.
-- keep_ms > 0 (a final status): entries older than keep_ms are trimmed, on 1 call in 16
-- (chosen by the run id's last character) so the trim cost is amortized.
-- @include keys.lua
local function move_index(prefix, id, job, old, new, now, keep_ms)
  if old and old ~= '' then
    redis.call('ZREM', K.idx(prefix, old), id)
    redis.call('ZREM', K.idxj(prefix, job, old), id)
  end
  local by_status = K.idx(prefix, new)
  local by_job = K.idxj(prefix, job, new)
  redis.call('ZADD', by_status, now, id)
  redis.call('ZADD', by_job, now, id)
  if keep_ms > 0 and string.byte(id, -1) % 16 == 0 then
    local horizon = string.format('%d', now - keep_ms)
    redis.call('ZREMRANGEBYSCORE', by_status, '-inf', horizon)
    redis.call('ZREMRANGEBYSCORE', by_job, '-inf', horizon)
  end
end
