-- apply_outbox: with partitions, apply one entry of another partition's outbox (K.outbox)
-- on this partition, where the run it names lives. Workers' relays call it at least once
-- per entry (stackshift_redis/_worker/relay.py); every action is idempotent, so an entry
-- applied twice (a relay that died before acknowledging it) has its effect once:
--   start   create the child run (invoke.lua) unless it exists
--   settle  settle the parent's wait for that child (settle_step checks the child id) and
--           resume the parent if it is parked (lib/finish_run.lua wrote it)
--   cancel  cancel the run (lib/cancel_run.lua: a final run stays as it is)
--   tx_record  record a transactional step committed on another partition (transact.lua,
--           remote commit) unless its commit token is recorded already
--   tx_start  a transactional step's start of a run on this partition (transact.lua): as
--           start does (lib/start_once.lua: idempotency key, flow control), once: its
--           outcome is kept in keys.tx_start(run id) (retention ms), so a second apply, even
--           of a start that was skipped or merged, changes nothing
-- KEYS[1] run  keys.run(run id) of the run the entry names
-- ARGV[1] prefix (this partition's)  ARGV[2] action  ARGV[3] run id  ARGV[4] retention ms
-- ARGV[3+2i] name_i  ARGV[4+2i] value_i: the entry's fields (as XREADGROUP gave them)
-- Returns 1 when the entry changed something, else 0.
-- Cost: one run's start, settle or cancel.
-- @include keys.lua
-- @include now_ms.lua
-- @include start_run.lua
-- @include pick_version.lua
-- @include settle_step.lua
-- @include adopt_wait.lua
-- @include resume_waiting.lua
-- @include cancel_run.lua
-- @include timeline.lua
-- @include start_once.lua
-- @include with_version.lua
local prefix, action, id = ARGV[1], ARGV[2], ARGV[3]
local rk, e, now = KEYS[1], {}, now_ms()
for i = 1, (#ARGV - 4) / 2 do e[ARGV[3 + 2 * i]] = ARGV[4 + 2 * i] end
if action == 'start' then
  if redis.call('EXISTS', rk) == 1 then return 0 end
  local fields = cjson.decode(e.fields)
  local ver = pick_version(prefix, e.job, 0, now)
  if ver ~= 1 then fields['ver'] = ver end
  local plan = nil
  if e.plan ~= '' then plan = cjson.decode(e.plan) end
  start_run(prefix, e.job, e.queue, id, e.payload, plan, now, now, 0, fields)
  return 1
elseif action == 'settle' then
  local value = e.value
  if e.cause == 'child_ok' and value == '' then value = nil end
  local settled = settle_step(prefix, rk, id, e.step, e.cause, value, now, e.child)
  if not settled and adopt_wait(prefix, rk, id) then -- parked by an older version
    settled = settle_step(prefix, rk, id, e.step, e.cause, value, now, e.child)
  end
  if not settled then return 0 end
  resume_waiting(prefix, rk, id, now, e.cause)
  return 1
elseif action == 'tx_record' then
  if redis.call('EXISTS', rk) == 0 or redis.call('HEXISTS', rk, 'tx:' .. e.step) == 1 then
    return 0
  end
  redis.call('HSET', rk, 's:' .. e.step, e.record, 'tx:' .. e.step, e.token)
  timeline(rk, now, 'step_completed', {step = e.step, tx = cjson.decode(e.summary)})
  return 1
elseif action == 'tx_start' then
  local mark = K.tx_start(prefix, id)
  if redis.call('EXISTS', mark) == 1 or redis.call('EXISTS', rk) == 1 then return 0 end
  local extra = {}
  if e.fields ~= '' then extra = cjson.decode(e.fields) end
  extra = with_version(extra, pick_version(prefix, e.job, tonumber(e.ver), now))
  local due = tonumber(e.made) + tonumber(e.delay)
  if tonumber(e.at) > 0 then due = tonumber(e.at) end
  local idem, ik = e.idem == '1', rk
  if idem then ik = K.idem(prefix, e.job, e.key) end
  local rid = start_once(prefix, e.job, e.queue, rk, ik, id, idem, e.payload, e.plan, extra,
    now, due, tonumber(ARGV[4]), e.ttl)
  redis.call('SET', mark, rid, 'PX', ARGV[4])
  return 1
elseif action == 'cancel' then
  local out = cancel_run(prefix, id, e.reason, now, tonumber(ARGV[4]))
  if out and out[2] == 1 then return 1 end
  return 0
end
return redis.error_reply('INVALID unknown outbox action ' .. tostring(action))
