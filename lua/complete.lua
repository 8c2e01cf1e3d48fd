-- complete: record a run's result and finish it as completed (fenced by the lease token).
-- A cancel requested while the attempt ran that no step observed (the handler returned
-- first) came too late: the run completes and its `completed` timeline entry carries
-- `cancel_too_late`, the cancel's reason.
-- KEYS[1] run  keys.run(id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] result (bytes)  ARGV[5] retention_ms
-- Returns 1 (also for a re-sent call that already completed it).
-- Errors: LEASE_LOST when another worker holds the run now, or when the run ended otherwise
-- meanwhile (its expired lease was recovered: re-queued, or cancelled for a pending cancel).
-- @include now_ms.lua
-- @include check_lease.lua
-- @include release_lease.lua
-- @include finish_run.lua
local prefix, id = ARGV[1], ARGV[2]
local f, err = check_lease(KEYS[1], id, ARGV[3], 'error')
if not f then
  local now_f = redis.call('HMGET', KEYS[1], 'status', 'token')
  if now_f[1] == 'completed' and now_f[2] == ARGV[3] then return 1 end -- a re-sent call
  return redis.error_reply(err)
end
release_lease(prefix, f[3], id, f)
local entry = {}
if f[10] then entry['cancel_too_late'] = f[10] end
finish_run(prefix, KEYS[1], id, f[2], 'running', 'completed', now_ms(), tonumber(ARGV[5]),
  {result = ARGV[4]}, entry,
  {tl_len = f[5], awaited = f[6], parent = f[7], wait_n = f[8], out = f[9], flow = true,
   cxl = f[12], sgl = f[13], cancel = f[10], err = f[14], queue = f[3]}) -- (an earlier attempt's error goes: the timeline keeps it)
return 1
