-- wait_event: a wait_for_event step: match a recent event (lookback), or register the step
-- as a pending wait of the running run (its waiter set, see lib/add_wait.lua).
-- KEYS[1] run      keys.run(run_id)      HASH
-- KEYS[2] log      keys.event_log(e)     ZSET recent event ids by time ms
-- KEYS[3] data     keys.event_data(e)    HASH event id -> event bytes; id..':m' -> flat JSON
-- KEYS[4] shapes   keys.event_shapes(e)  HASH shape -> number of waiters
-- KEYS[5] waiters  keys.event_waiters(e, shape, vkey)  SET '<run id>|<step>'
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] step  ARGV[5] event name
-- ARGV[6] shape  ARGV[7] values key  ARGV[8] timeout ms (-1: none)  ARGV[9] lookback ms
-- ARGV[10] timed-out record (complete)  ARGV[11] received-record prefix
-- ARGV[12] '1': park the run right away when the wait is pending (see sleep.lua)
-- A cancel requested for the run: {'cancel'} instead of parking.
-- Returns {'done', record} (a recent event matched), {'pending'}, {'waiting'} or
-- {'parked'} (see sleep.lua).  Errors: LEASE_LOST.
-- @include now_ms.lua
-- @include timeline.lua
-- @include mp_pack.lua
-- @include wait_begin.lua
-- @include add_wait.lua
-- @include park_run.lua
-- @include values_key.lua
local prefix, id, step, event = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local shape, vkey = ARGV[6], ARGV[7]
local rk = KEYS[1]
local f, reply = wait_begin(rk, id, ARGV[3], step)
if not f then return reply end
local now = now_ms()
local lookback = tonumber(ARGV[9])
if lookback > 0 then
  local recent = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', now - lookback, 'LIMIT', 0, 1000)
  for _, eid in ipairs(recent) do
    local flat = redis.call('HGET', KEYS[3], eid .. ':m')
    if flat and values_key(shape, cjson.decode(flat)) == vkey then
      local record = ARGV[11] .. mp_pack(redis.call('HGET', KEYS[3], eid), true)
      redis.call('HSET', rk, 's:' .. step, record)
      timeline(rk, now, 'event_received', {step = step, event = eid, lookback = true})
      return {'done', record}
    end
  end
end
local due = 0
if tonumber(ARGV[8]) >= 0 then due = now + tonumber(ARGV[8]) end
add_wait(prefix, rk, id, step, {k = 'event', d = due, e = event, s = shape, v = vkey},
  {wr_none = ARGV[10], wr_ok = ARGV[11]})
if ARGV[12] ~= '1' then return {'pending'} end
if not park_run(prefix, rk, id, f, {step}, now) then return {'cancel'} end
return {'waiting'}
