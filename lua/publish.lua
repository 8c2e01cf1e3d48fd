-- publish: append a message to a running run's output stream (ctx.publish), fenced by the
-- lease token, capped at `cap` entries (the oldest are trimmed). The run's `out` field marks
-- that the stream exists (finish_run ends it and expires it with the run) and holds the
-- last id and call: a call re-sent after a lost reply gets that id back, nothing added.
-- KEYS[1] run     keys.run(run_id)     HASH
-- KEYS[2] output  keys.output(run_id)  STREAM {a = attempt, t = topic (absent: default),
--                 d = data}; each finish adds {e = status}
-- ARGV[1] run_id  ARGV[2] token  ARGV[3] call (1, 2, ... within the attempt)
-- ARGV[4] attempt  ARGV[5] topic ('' for default)  ARGV[6] data (bytes)  ARGV[7] cap
-- Returns the message id.  Errors: LEASE_LOST.
-- Cost: HMGET, XADD (exact MAXLEN: one entry trimmed per message at the cap), HSET.
-- @include now_ms.lua
-- @include check_lease.lua
-- @include out_id.lua
local rk = KEYS[1]
local f, err = check_lease(rk, ARGV[1], ARGV[2])
if not f then return redis.error_reply(err) end
local call = ARGV[2] .. ':' .. ARGV[3]
local last, seen = string.match(f[9] or '', '^(%S+) (%S+)$')
if seen == call then return last end -- a re-sent call: added already
local id = out_id(f[9], now_ms())
local args = {'XADD', KEYS[2], 'MAXLEN', ARGV[7], id, 'a', ARGV[4]}
if ARGV[5] ~= '' then
  args[#args + 1] = 't'
  args[#args + 1] = ARGV[5]
end
args[#args + 1] = 'd'
args[#args + 1] = ARGV[6]
redis.call(unpack(args))
redis.call('HSET', rk, 'out', id .. ' ' .. call)
return id
