-- complete: record a run's result and finish it as completed (fenced by the lease token).
-- KEYS[1] run  keys.run(id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] result (bytes)  ARGV[5] retention_ms
-- Returns 1 (also for a re-sent call that already completed it).
-- Errors: LEASE_LOST when another worker holds the run now.
-- @include now_ms.lua
-- @include check_lease.lua
-- @include done_by.lua
-- @include release_lease.lua
-- @include finish_run.lua
local prefix, id = ARGV[1], ARGV[2]
local f, err = check_lease(KEYS[1], id, ARGV[3])
if not f then
  if done_by(redis.call('HMGET', KEYS[1], 'status', 'job', 'queue', 'token'), ARGV[3]) then
    return 1
  end
  return redis.error_reply(err)
end
release_lease(prefix, f[3], id)
finish_run(prefix, KEYS[1], id, f[2], 'running', 'completed', now_ms(), tonumber(ARGV[5]),
  {result = ARGV[4]}, {},
  {tl_len = f[5], awaited = f[6], parent = f[7], wait_n = f[8], out = f[9]})
redis.call('HDEL', KEYS[1], 'error') -- an earlier attempt's error: history stays in the timeline
return 1
