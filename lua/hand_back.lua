-- hand_back: a worker took a run of a job (or job version) it does not register (a rolling
-- deploy): give the run back (scheduled again after delay_ms, not failed; the take does
-- not count as a delivery) so that a worker which has it takes it. When workers publish
-- the job's live versions (keys.job_versions) and none has the run's version, the run is
-- held queued until one does (lib/hold_unserved.lua), however long; while one does, the
-- run is only scheduled again. Otherwise (no worker of this release registered the job) a
-- run handed back for limit_ms without a break longer than a minute fails with `error`.
-- KEYS[1] run  keys.run(id)  HASH
-- Derived (K): the queue's delayed set K.delayed(queue).
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] delay_ms  ARGV[5] limit_ms
-- ARGV[6] retention_ms  ARGV[7] error JSON (when it fails)
-- Returns 'scheduled', 'queued' (held: no live worker has its version) or 'failed' (also
-- for a re-sent call that already handed it back).
-- Errors: LEASE_LOST when another worker holds the run.
-- @include keys.lua
-- @include now_ms.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include check_lease.lua
-- @include done_by.lua
-- @include release_lease.lua
-- @include finish_run.lua
-- @include hold_unserved.lua
local prefix, id, rk = ARGV[1], ARGV[2], KEYS[1]
local f, lost = check_lease(rk, id, ARGV[3])
if not f then
  local now_f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'token')
  if done_by(now_f, ARGV[3]) then return now_f[1] end
  return redis.error_reply(lost)
end
local now = now_ms()
release_lease(prefix, f[3], id, f)
local ver = redis.call('HGET', rk, 'ver') or '1'
local vk = K.job_versions(prefix, f[2])
local known = redis.call('EXISTS', vk) == 1 -- workers of this release registered the job
if known and tonumber(redis.call('ZSCORE', vk, ver) or 0) < now then
  hold_unserved(prefix, rk, id, f[2], ver, now, f[3])
  return 'queued'
end
local h = redis.call('HMGET', rk, 'unclaimed_since', 'unclaimed_last')
local since = tonumber(h[1] or now)
if now - tonumber(h[2] or now) > 60000 then since = now end -- a new episode
if not known and now - since >= tonumber(ARGV[5]) then -- (a live worker has it: no limit)
  local err = cjson.decode(ARGV[7])
  finish_run(prefix, rk, id, f[2], 'running', 'failed', now, tonumber(ARGV[6]),
    {error = ARGV[7], deliveries = 0}, {error = err.message},
    {tl_len = f[5], awaited = f[6], parent = f[7], wait_n = f[8], out = f[9],
    queue = f[3]})
  return 'failed'
end
redis.call('HSET', rk, 'unclaimed_since', since, 'unclaimed_last', now)
redis.call('HINCRBY', rk, 'deliveries', -1)
local due = now + tonumber(ARGV[4])
redis.call('ZADD', K.delayed(prefix, f[3]), due, id)
redis.call('HINCRBY', K.queue_stat(prefix, f[3]), 'scheduled', 1) -- queue counter (metrics)
timeline(rk, now, 'handed_back', {reason = 'job version not registered in the worker',
  version = tonumber(ver), due = due})
set_status(prefix, rk, id, f[2], 'running', 'scheduled', now, 0)
return 'scheduled'
