-- wait_event: a wait_for_event step: match a recent event (lookback) or register a waiter
-- and park the run until a matching event or the timeout, in one atomic step.
-- KEYS[1] run      keys.run(run_id)      HASH
-- KEYS[2] log      keys.event_log(e)     ZSET recent event ids by time ms
-- KEYS[3] data     keys.event_data(e)    HASH event id -> event bytes; id..':m' -> flat JSON
-- KEYS[4] shapes   keys.event_shapes(e)  HASH shape -> number of waiters
-- KEYS[5] waiters  keys.event_waiters(e, shape, vkey)  SET run ids
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] token  ARGV[4] step  ARGV[5] event name
-- ARGV[6] shape  ARGV[7] values key  ARGV[8] timeout ms (-1: none)  ARGV[9] lookback ms
-- ARGV[10] timed-out record (complete)  ARGV[11] received-record prefix
-- Returns {'done', event bytes} (a recent event matched) or {'waiting'}.  Errors: LEASE_LOST.
-- @include now_ms.lua
-- @include timeline.lua
-- @include mp_pack.lua
-- @include check_lease.lua
-- @include parked_by.lua
-- @include suspend_run.lua
-- @include values_key.lua
local prefix, id, step, event = ARGV[1], ARGV[2], ARGV[4], ARGV[5]
local shape, vkey = ARGV[6], ARGV[7]
local rk = KEYS[1]
local f, err = check_lease(rk, id, ARGV[3])
if not f then
  local parked = parked_by(rk, ARGV[3], step)
  if parked then return {'waiting'} end -- a re-sent call
  return redis.error_reply(err)
end
local now = now_ms()
local lookback = tonumber(ARGV[9])
if lookback > 0 then
  local recent = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', now - lookback, 'LIMIT', 0, 1000)
  for _, eid in ipairs(recent) do
    local flat = redis.call('HGET', KEYS[3], eid .. ':m')
    if flat and values_key(shape, cjson.decode(flat)) == vkey then
      local bytes = redis.call('HGET', KEYS[3], eid)
      redis.call('HSET', rk, 's:' .. step, ARGV[11] .. mp_pack(bytes, true))
      timeline(rk, now, 'event_received', {step = step, event = eid, lookback = true})
      return {'done', bytes}
    end
  end
end
redis.call('SADD', KEYS[5], id)
redis.call('HINCRBY', KEYS[4], shape, 1)
local due = 0
if tonumber(ARGV[8]) >= 0 then due = now + tonumber(ARGV[8]) end
suspend_run(prefix, rk, id, f[2], f[3], now, due, {wait_kind = 'event', wait_step = step,
  wait_timeout_rec = ARGV[10], wait_ok_rec = ARGV[11], wait_event = event, wait_shape = shape,
  wait_values = vkey})
return {'waiting'}
