-- invoke: start a child run once per (parent, step) and register the step as a pending
-- wait of the running parent (finish_run() settles it when the child ends), atomic with
-- the child's creation. Children invoked by one attempt run in parallel.
-- KEYS[1] run   keys.run(parent_id)                          HASH the parent
-- KEYS[2] idem  keys.idem(child_job, 'invoke:<parent>:<step>')  STRING -> child run id
-- ARGV[1] prefix  ARGV[2] parent id  ARGV[3] token  ARGV[4] step  ARGV[5] child job
-- ARGV[6] child queue  ARGV[7] new child id  ARGV[8] child payload  ARGV[9] timeout ms (-1)
-- ARGV[10] idempotency ttl ms  ARGV[11] timed-out record  ARGV[12] completed-record prefix
-- ARGV[13] failed-record prefix  ARGV[14] hook fields for the child (JSON {"x:<name>": v}, or '')
-- ARGV[15] '1': park the parent right away when the wait is pending (see suspend.lua)
-- ARGV[16] definitions revision (lib/defs_rev.lua)  ARGV[17] the child's plan JSON or ''
-- (its job's published rules; never rate limit, singleton or debounce: a child is always
-- created), the child pinned to its job's highest live version.
-- A cancel requested for the parent: {'cancel'} instead of parking. A child id of another
-- partition (its flow-control key routes it there) is created there through the outbox
-- (lua/apply_outbox.lua): the wait is registered here, and the child's end settles it.
-- Returns {'done', record, child id} (the child had already finished: step recorded),
-- {'pending', child id}, {'waiting', child id} or {'parked'} (see suspend.lua).
-- Errors: LEASE_LOST; STALE when the definitions changed since ARGV[16] (nothing written).
-- @include keys.lua
-- @include now_ms.lua
-- @include timeline.lua
-- @include mp_pack.lua
-- @include wait_begin.lua
-- @include start_run.lua
-- @include add_wait.lua
-- @include park_run.lua
-- @include defs_rev.lua
-- @include pick_version.lua
-- @include elsewhere.lua
local prefix, id, step = ARGV[1], ARGV[2], ARGV[4]
local rk = KEYS[1]
local stale = defs_rev(prefix, ARGV[16] or '')
if stale then return stale end
local f, reply = wait_begin(rk, id, ARGV[3], step)
if not f then return reply end
local now = now_ms()
local child = redis.call('GET', KEYS[2])
local remote = elsewhere(prefix, child or ARGV[7])
if remote and not child then
  child = ARGV[7]
  local fields = {}
  if ARGV[14] ~= '' then fields = cjson.decode(ARGV[14]) end
  fields['parent'], fields['parent_step'] = id, step
  redis.call('XADD', K.outbox(prefix), '*', 'a', 'start', 'run', child, 'job', ARGV[5],
    'queue', ARGV[6], 'payload', ARGV[8], 'plan', ARGV[17] or '', 'fields', cjson.encode(fields))
  redis.call('SET', KEYS[2], child, 'PX', ARGV[10])
  timeline(rk, now, 'child_started', {step = step, child = child})
elseif not remote and (not child or redis.call('EXISTS', K.run(prefix, child)) == 0) then
  child = ARGV[7]
  local fields = {}
  if ARGV[14] ~= '' then fields = cjson.decode(ARGV[14]) end
  fields['parent'], fields['parent_step'], fields['idem_key'] = id, step, KEYS[2]
  local ver = pick_version(prefix, ARGV[5], 0, now)
  if ver ~= 1 then fields['ver'] = ver end
  local plan = nil
  if (ARGV[17] or '') ~= '' then plan = cjson.decode(ARGV[17]) end
  start_run(prefix, ARGV[5], ARGV[6], child, ARGV[8], plan, now, now, 0, fields)
  redis.call('SET', KEYS[2], child, 'PX', ARGV[10])
  timeline(rk, now, 'child_started', {step = step, child = child})
end
local c = {}
if not remote then c = redis.call('HMGET', K.run(prefix, child), 'status', 'result', 'error') end
if c[1] == 'completed' then
  local record = ARGV[12] .. mp_pack(c[2], true)
  redis.call('HSET', rk, 's:' .. step, record)
  timeline(rk, now, 'child_completed', {step = step, child = child})
  return {'done', record, child}
elseif c[1] == 'failed' or c[1] == 'cancelled' then
  local msg = 'child run ' .. child .. ' ' .. c[1]
  if c[3] then msg = msg .. ': ' .. tostring(cjson.decode(c[3]).message) end
  local record = ARGV[13] .. mp_pack(msg, false)
  redis.call('HSET', rk, 's:' .. step, record)
  timeline(rk, now, 'child_failed', {step = step, child = child})
  return {'done', record, child}
end
local due = 0
if tonumber(ARGV[9]) >= 0 then due = now + tonumber(ARGV[9]) end
add_wait(prefix, rk, id, step, {k = 'child', d = due, c = child},
  {wr_child_to = ARGV[11], wr_ok = ARGV[12], wr_fail = ARGV[13]})
if ARGV[15] ~= '1' then return {'pending', child} end
if not park_run(prefix, rk, id, f, {step}, now) then return {'cancel'} end
return {'waiting', child}
