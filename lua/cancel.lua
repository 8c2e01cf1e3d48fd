-- cancel: cancel a run. Queued, scheduled and waiting runs end at once (ready entry, waiters
-- and timers removed; a child it waits for is cancelled too, down to 32 levels); a running
-- run gets a cancel flag and stops at its next step. See lib/cancel_run.lua.
-- KEYS[1] run  keys.run(run_id)  HASH
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] reason  ARGV[4] retention_ms
-- Workers learn of a flagged run from keys.control() (derived: K.ctl).
-- Returns {status after the call, 1 if this call cancelled or flagged it else 0},
-- or 0 when there is no such run.
-- @include keys.lua
-- @include now_ms.lua
-- @include cancel_run.lua
local out = cancel_run(ARGV[1], ARGV[2], ARGV[3], now_ms(), tonumber(ARGV[4]))
if not out then return 0 end
return out
