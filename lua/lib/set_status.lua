-- set_status: move a run between status indexes; keep_ms > 0 marks a final status:
-- the run expires after keep_ms and older entries of that index are trimmed. (A final run
-- made live again must PERSIST its key: see retry.lua.)
-- @include key.lua
local function set_status(prefix, rk, id, job, old, new, now, keep_ms)
  if old and old ~= '' then
    redis.call('ZREM', key(prefix, 'idx', old), id)
    redis.call('ZREM', key(prefix, 'idxj', job, old), id)
  end
  local by_status = key(prefix, 'idx', new)
  local by_job = key(prefix, 'idxj', job, new)
  redis.call('ZADD', by_status, now, id)
  redis.call('ZADD', by_job, now, id)
  redis.call('HSET', rk, 'status', new)
  if keep_ms > 0 then
    local horizon = string.format('%d', now - keep_ms)
    redis.call('ZREMRANGEBYSCORE', by_status, '-inf', horizon)
    redis.call('ZREMRANGEBYSCORE', by_job, '-inf', horizon)
    redis.call('PEXPIRE', rk, keep_ms)
  end
end
