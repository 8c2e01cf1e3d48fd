-- park: an attempt whose every branch awaits a durable wait parks its run here (one call
-- for all of them: waits begun together in asyncio.gather park together).
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[3+1i] the pending steps awaited now
-- Returns {'running', step, record, ...}: some of them have settled (the attempt goes on
-- with their records), or {'waiting'}: the run is parked until the first of them settles
-- (also for a call re-sent after its reply was lost).
-- or {'cancel'}: a cancel was requested (the run is not parked; the attempt stops).
-- Errors: LEASE_LOST; WAIT_MISSING when a step has neither a record nor a pending wait.
-- @include now_ms.lua
-- @include check_lease.lua
-- @include parked_by.lua
-- @include park_run.lua
local prefix, id = ARGV[1], ARGV[2]
local rk = KEYS[1]
local f, err = check_lease(rk, id, ARGV[3])
if not f then
  if parked_by(rk, ARGV[3]) then return {'waiting'} end
  return redis.error_reply(err)
end
local steps = {}
for i = 1, #ARGV - 3 do steps[i] = ARGV[3 + 1 * i] end
local settled, missing = park_run(prefix, rk, id, f, steps, now_ms())
if not settled and not missing then return {'cancel'} end
if not settled then
  return redis.error_reply('WAIT_MISSING run=' .. id .. ' step=' .. missing)
end
if #settled == 0 then return {'waiting'} end
table.insert(settled, 1, 'running')
return settled
