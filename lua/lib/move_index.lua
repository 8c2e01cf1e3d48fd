-- move_index: move a run from the status indexes of `old` (may be nil) to those of `new`.
-- Every status but running has K.ord (and K.ordj per job), all scores 0, ordered by run
-- id, i.e. by creation time (stable paging: a run keeps its place). The statuses whose
-- entry time is read (scheduled, waiting and the final ones: recency, "finished in the
-- last minute", retention trimming) also have K.idx (and K.idxj), scored by the time the
-- run entered the status. Layout 4: queued has no time index (nothing reads when a run
-- entered it) and running no index at all: running runs are the members of their
-- queues' leases (list_runs.lua reads them there), bounded by the workers' concurrency.
-- keep_ms > 0 (a final status): up to 256 entries older than keep_ms are trimmed from both,
-- on 1 call in 16 (chosen by the run id's 24th character: its last, before a partition's
-- `-<p>`) so the trim cost is amortized.
-- @include keys.lua
local UNTIMED = {queued = true, running = true}
local function move_index(prefix, id, job, old, new, now, keep_ms)
  if old and old ~= '' and old ~= 'running' then
    if not UNTIMED[old] then
      redis.call('ZREM', K.idx_status(prefix, old), id)
      redis.call('ZREM', K.idx_job_status(prefix, job, old), id)
    end
    redis.call('ZREM', K.ord_status(prefix, old), id)
    redis.call('ZREM', K.ord_job_status(prefix, job, old), id)
  end
  if new == 'running' then return end
  local ord_status = K.ord_status(prefix, new)
  local ord_job = K.ord_job_status(prefix, job, new)
  redis.call('ZADD', ord_status, 0, id)
  redis.call('ZADD', ord_job, 0, id)
  if UNTIMED[new] then return end
  local by_status = K.idx_status(prefix, new)
  local by_job = K.idx_job_status(prefix, job, new)
  redis.call('ZADD', by_status, now, id)
  redis.call('ZADD', by_job, now, id)
  if keep_ms > 0 and string.byte(id, math.min(#id, 24)) % 16 == 0 then
    local horizon = string.format('%d', now - keep_ms)
    for _, pair in ipairs({{by_status, ord_status}, {by_job, ord_job}}) do
      local expired = redis.call('ZRANGEBYSCORE', pair[1], '-inf', horizon, 'LIMIT', 0, 256)
      if #expired > 0 then
        redis.call('ZREM', pair[1], unpack(expired))
        redis.call('ZREM', pair[2], unpack(expired))
      end
    end
  end
end
