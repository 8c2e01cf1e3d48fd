-- progress: record a running run's progress value, fenced by the lease token like every
-- write of an attempt (a stale worker cannot overwrite a finished run's progress, nor
-- re-create an expired run's key without its TTL).
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] run_id  ARGV[2] token  ARGV[3] progress (bytes)
-- Returns 1.  Errors: LEASE_LOST.
-- @include check_lease.lua
local f, err = check_lease(KEYS[1], ARGV[1], ARGV[2])
if not f then return redis.error_reply(err) end
redis.call('HSET', KEYS[1], 'progress', ARGV[3])
return 1
