-- fail: end a failed attempt: schedule a retry, or finish the run as failed or cancelled.
-- KEYS[1] run  keys.run(id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] error (JSON)
-- ARGV[5] outcome ('retry' | 'failed' | 'cancelled')  ARGV[6] retry delay ms  ARGV[7] retention_ms
-- A cancelled run's pending invoke children are cancelled too (lib/cancel_run.lua).
-- Returns the new status (also for a re-sent call that already finished it).
-- Errors: LEASE_LOST when another worker holds the run now.
-- @include keys.lua
-- @include now_ms.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include check_lease.lua
-- @include done_by.lua
-- @include release_lease.lua
-- @include finish_run.lua
-- @include cancel_run.lua
local prefix, id, outcome = ARGV[1], ARGV[2], ARGV[5]
local rk = KEYS[1]
local f, lost = check_lease(rk, id, ARGV[3])
if not f then
  local now_f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'token')
  if done_by(now_f, ARGV[3]) then return now_f[1] end
  return redis.error_reply(lost)
end
local now = now_ms()
local err = cjson.decode(ARGV[4])
release_lease(prefix, f[3], id, f)
if outcome == 'retry' then
  redis.call('HSET', rk, 'error', ARGV[4], 'deliveries', 0)
  local due = now + tonumber(ARGV[6])
  redis.call('HINCRBY', rk, 'fails', 1)
  redis.call('ZADD', K.delayed(prefix, f[3]), due, id)
  redis.call('HINCRBY', K.queue_stat(prefix, f[3]), 'scheduled', 1)
  timeline(rk, now, 'retrying', {error = err.message, due = due})
  set_status(prefix, rk, id, f[2], 'running', 'scheduled', now, 0)
  return 'scheduled'
end
if outcome == 'cancelled' then -- the children its pending waits are for go with it
  cancel_run(prefix, drop_waits(prefix, rk, id), err.message, now, tonumber(ARGV[7]))
end
finish_run(prefix, rk, id, f[2], 'running', outcome, now, tonumber(ARGV[7]),
  {error = ARGV[4], deliveries = 0}, {error = err.message},
  {tl_len = f[5], awaited = f[6], parent = f[7], wait_n = f[8], out = f[9],
    queue = f[3]})
return outcome
