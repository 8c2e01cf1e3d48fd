-- send_event: record an event once per id: resume every run waiting for a matching event
-- and start the runs of jobs triggered by its name (on_event), atomically.
-- KEYS[1] seen      keys.event_seen(id)     STRING dedupe marker (dedupe window)
-- KEYS[2] log       keys.event_log(e)       ZSET recent event ids by time ms (lookback)
-- KEYS[3] data      keys.event_data(e)      HASH id -> event bytes; id..':m' -> flat JSON
-- KEYS[4] shapes    keys.event_shapes(e)    HASH match shape -> number of waiters
-- KEYS[5] triggers  keys.triggers(e)        HASH job -> queue (published by workers)
-- KEYS[6] names     keys.event_names()      ZSET event names by last sent ms (inspection)
-- ARGV[1] prefix  ARGV[2] event name  ARGV[3] event id  ARGV[4] event bytes
-- ARGV[5] flat data JSON (path -> canonical JSON)  ARGV[6] payload bytes for started runs
-- ARGV[7] dedupe ms  ARGV[8] log window ms  ARGV[9] local triggers JSON {job: queue}
-- ARGV[10] call token (unique per send() call: a re-sent call is recognised as this one)
-- ARGV[11] hook fields for started runs (JSON object {"x:<name>": value}, may be '')
-- ARGV[12] retention_ms (runs cancelled by their CancelOn rules)
-- ARGV[13] flow-control plans of triggered jobs: JSON {job: plan JSON} (may be '{}'),
-- made from the published definitions at revision ARGV[14] (lib/defs_rev.lua)
-- Each started run is pinned to its job's highest live version (lib/pick_version.lua).
-- Waiter set members are '<run id>|<step>' (a pending wait: settled with the event, and
-- the run resumed if parked); they also hold CancelOn registrations, named '!<run id>':
-- those runs are cancelled.
-- Returns {duplicate 0|1, {run ids whose wait got the event}, {started run ids},
-- {cancelled run ids}} (a triggered run its flow control skipped or merged into a debounce
-- burst is not listed); a re-sent call (its reply was lost) gets the first call's outcome,
-- not duplicate.
-- Errors: STALE when the definitions changed since ARGV[14] (nothing written).
-- Cost: O(shapes of this event name + matched waiters + triggers); waiters are never scanned.
-- @include keys.lua
-- @include now_ms.lua
-- @include adopt_wait.lua
-- @include settle_step.lua
-- @include resume_waiting.lua
-- @include start_run.lua
-- @include lua_run_id.lua
-- @include values_key.lua
-- @include cancel_on_event.lua
-- @include defs_rev.lua
-- @include pick_version.lua
-- @include with_version.lua
local prefix, name, eid, bytes = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local seen = redis.call('GET', KEYS[1])
if seen then
  local sep = string.find(seen, '|', 1, true)
  if sep and string.sub(seen, 1, sep - 1) == ARGV[10] then
    local first = cjson.decode(string.sub(seen, sep + 1))
    return {0, first[1], first[2], first[3]}
  end
  return {1, {}, {}, {}}
end
local stale = defs_rev(prefix, ARGV[14])
if stale then return stale end
local now = now_ms()
redis.call('ZADD', KEYS[6], now, name)
if redis.call('ZCARD', KEYS[6]) > 1000 then redis.call('ZREMRANGEBYRANK', KEYS[6], 0, 0) end
local window = tonumber(ARGV[8])
if window > 0 then
  redis.call('ZADD', KEYS[2], now, eid)
  redis.call('HSET', KEYS[3], eid, bytes, eid .. ':m', ARGV[5])
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - window, 'LIMIT', 0, 200)
  if redis.call('ZCARD', KEYS[2]) > 10000 then
    old = redis.call('ZRANGE', KEYS[2], 0, 199)
  end
  for _, o in ipairs(old) do
    redis.call('ZREM', KEYS[2], o)
    redis.call('HDEL', KEYS[3], o, o .. ':m')
  end
  redis.call('PEXPIRE', KEYS[2], window)
  redis.call('PEXPIRE', KEYS[3], window)
end
local flat = cjson.decode(ARGV[5])
local resumed, cancelled, got = {}, {}, {}
local keep = tonumber(ARGV[12])
for _, shape in ipairs(redis.call('HKEYS', KEYS[4])) do
  local vkey = values_key(shape, flat)
  if vkey then
    for _, rid in ipairs(redis.call('SMEMBERS', K.event_waiters(prefix, name, shape, vkey))) do
      if string.byte(rid, 1) == 33 then -- '!': a CancelOn registration
        local cid = string.sub(rid, 2)
        if cancel_on_event(prefix, cid, {name, shape, vkey}, eid, now, keep) then
          cancelled[#cancelled + 1] = cid
        end
      else -- '<run id>|<step>': a pending wait
        local sep = string.find(rid, '|', 1, true)
        local run, step = rid, nil
        if sep then
          run, step = string.sub(rid, 1, sep - 1), string.sub(rid, sep + 1)
        end
        local rk = K.run(prefix, run)
        if not sep then step = adopt_wait(prefix, rk, run) end -- a wait of an older version
        if settle_step(prefix, rk, run, step, 'event', bytes, now, nil) then
          resume_waiting(prefix, rk, run, now, 'event')
          if not got[run] then
            got[run] = true
            resumed[#resumed + 1] = run
          end
        end
      end
    end
  end
end
local jobs = cjson.decode(ARGV[9])
local stored = redis.call('HGETALL', KEYS[5])
for i = 1, #stored, 2 do
  if jobs[stored[i]] == nil then jobs[stored[i]] = stored[i + 1] end
end
local plans = cjson.decode(ARGV[13])
local started = {}
local fields = {}
if ARGV[11] ~= '' then fields = cjson.decode(ARGV[11]) end
fields['event'] = bytes
for job, queue in pairs(jobs) do
  local rid = lua_run_id(prefix, now)
  local plan = nil
  if plans[job] then plan = cjson.decode(plans[job]) end
  local f = with_version(fields, pick_version(prefix, job, 0, now))
  local got, merged = start_run(prefix, job, queue, rid, ARGV[6], plan, now, now, keep, f)
  if got ~= '' and merged == 0 then started[#started + 1] = rid end
end
local outcome = cjson.encode({resumed, started, cancelled})
redis.call('SET', KEYS[1], ARGV[10] .. '|' .. outcome, 'PX', ARGV[7])
return {0, resumed, started, cancelled}
