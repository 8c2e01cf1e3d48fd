-- invoke: start a child run once per (parent, step) and park the parent until the child
-- finishes (finish_run() resumes it) or the timeout fires; atomic with the child's creation.
-- KEYS[1] run   keys.run(parent_id)                          HASH the parent
-- KEYS[2] idem  keys.idem(child_job, 'invoke:<parent>:<step>')  STRING -> child run id
-- ARGV[1] prefix  ARGV[2] parent id  ARGV[3] token  ARGV[4] step  ARGV[5] child job
-- ARGV[6] child queue  ARGV[7] new child id  ARGV[8] child payload  ARGV[9] timeout ms (-1)
-- ARGV[10] idempotency ttl ms  ARGV[11] timed-out record  ARGV[12] completed-record prefix
-- ARGV[13] failed-record prefix  ARGV[14] hook fields for the child (JSON {"x:<name>": v}, or '')
-- Returns {'done', child id, step record} (the child had already finished: step recorded)
-- or {'waiting', child id}.  Errors: LEASE_LOST.
-- @include keys.lua
-- @include now_ms.lua
-- @include timeline.lua
-- @include mp_pack.lua
-- @include check_lease.lua
-- @include parked_by.lua
-- @include create_run.lua
-- @include suspend_run.lua
local prefix, id, step = ARGV[1], ARGV[2], ARGV[4]
local rk = KEYS[1]
local f, err = check_lease(rk, id, ARGV[3])
if not f then
  local parked = parked_by(rk, ARGV[3], step)
  if parked then return {'waiting', parked} end -- a re-sent call
  return redis.error_reply(err)
end
local now = now_ms()
local child = redis.call('GET', KEYS[2])
if not child or redis.call('EXISTS', K.run(prefix, child)) == 0 then
  child = ARGV[7]
  local fields = {}
  if ARGV[14] ~= '' then fields = cjson.decode(ARGV[14]) end
  fields['parent'], fields['parent_step'], fields['idem_key'] = id, step, KEYS[2]
  create_run(prefix, child, ARGV[5], ARGV[6], ARGV[8], now, now, fields)
  redis.call('SET', KEYS[2], child, 'PX', ARGV[10])
  timeline(rk, now, 'child_started', {step = step, child = child})
end
local c = redis.call('HMGET', K.run(prefix, child), 'status', 'result', 'error')
if c[1] == 'completed' then
  local record = ARGV[12] .. mp_pack(c[2], true)
  redis.call('HSET', rk, 's:' .. step, record)
  timeline(rk, now, 'child_completed', {step = step, child = child})
  return {'done', child, record}
elseif c[1] == 'failed' or c[1] == 'cancelled' then
  local msg = 'child run ' .. child .. ' ' .. c[1]
  if c[3] then msg = msg .. ': ' .. tostring(cjson.decode(c[3]).message) end
  local record = ARGV[13] .. mp_pack(msg, false)
  redis.call('HSET', rk, 's:' .. step, record)
  timeline(rk, now, 'child_failed', {step = step, child = child})
  return {'done', child, record}
end
local due = 0
if tonumber(ARGV[9]) >= 0 then due = now + tonumber(ARGV[9]) end
suspend_run(prefix, rk, id, f[2], f[3], now, due, {wait_kind = 'child', wait_step = step,
  wait_child = child, wait_timeout_rec = ARGV[11], wait_ok_rec = ARGV[12],
  wait_fail_rec = ARGV[13]})
return {'waiting', child}
