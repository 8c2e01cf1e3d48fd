-- emit_event: send_event's body (lua/send_event.lua; the commit of a transactional step,
-- lua/transact.lua, sends its events through it too). `ek` the event's six keys and `a` the
-- arguments, both indexed as send_event's KEYS and ARGV (a[15] '1': the stored triggers
-- ek[5] are not read). Returns duplicate 0|1, resumed, started and cancelled run ids (a
-- re-sent call, same a[10], gets the first outcome).
-- Each started run is pinned to its job's highest live version (lib/pick_version.lua).
-- @include keys.lua
-- @include now_ms.lua
-- @include adopt_wait.lua
-- @include settle_step.lua
-- @include resume_waiting.lua
-- @include start_run.lua
-- @include lua_run_id.lua
-- @include values_key.lua
-- @include cancel_on_event.lua
-- @include pick_version.lua
-- @include with_version.lua
local function emit_event(ek, a)
  local prefix, name, eid, bytes = a[1], a[2], a[3], a[4]
  local seen = redis.call('GET', ek[1])
  if seen then
    local sep = string.find(seen, '|', 1, true)
    if sep and string.sub(seen, 1, sep - 1) == a[10] then
      local first = cjson.decode(string.sub(seen, sep + 1))
      return {0, first[1], first[2], first[3]}
    end
    return {1, {}, {}, {}}
  end
  local now = now_ms()
  redis.call('ZADD', ek[6], now, name)
  if redis.call('ZCARD', ek[6]) > 1000 then redis.call('ZREMRANGEBYRANK', ek[6], 0, 0) end
  local window = tonumber(a[8])
  if window > 0 then
    redis.call('ZADD', ek[2], now, eid)
    redis.call('HSET', ek[3], eid, bytes, eid .. ':m', a[5])
    local old = redis.call('ZRANGEBYSCORE', ek[2], '-inf', now - window, 'LIMIT', 0, 200)
    if redis.call('ZCARD', ek[2]) > 10000 then
      old = redis.call('ZRANGE', ek[2], 0, 199)
    end
    for _, o in ipairs(old) do
      redis.call('ZREM', ek[2], o)
      redis.call('HDEL', ek[3], o, o .. ':m')
    end
    redis.call('PEXPIRE', ek[2], window)
    redis.call('PEXPIRE', ek[3], window)
  end
  local flat = cjson.decode(a[5])
  local resumed, cancelled, got = {}, {}, {}
  local keep = tonumber(a[12])
  for _, shape in ipairs(redis.call('HKEYS', ek[4])) do
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
  local jobs = cjson.decode(a[9])
  if a[15] ~= '1' then -- '1': a partition's leg, whose starts the caller resolved in a[9]
    local stored = redis.call('HGETALL', ek[5])
    for i = 1, #stored, 2 do
      if jobs[stored[i]] == nil then jobs[stored[i]] = stored[i + 1] end
    end
  end
  local plans = cjson.decode(a[13])
  local started = {}
  local fields = {}
  if a[11] ~= '' then fields = cjson.decode(a[11]) end
  fields['event'] = bytes
  for job, queue in pairs(jobs) do
    local rid = lua_run_id(prefix, now)
    local plan = nil
    if plans[job] then plan = cjson.decode(plans[job]) end
    local f = with_version(fields, pick_version(prefix, job, 0, now))
    local got, merged = start_run(prefix, job, queue, rid, a[6], plan, now, now, keep, f)
    if got ~= '' and merged == 0 then started[#started + 1] = rid end
  end
  local outcome = cjson.encode({resumed, started, cancelled})
  redis.call('SET', ek[1], a[10] .. '|' .. outcome, 'PX', a[7])
  return {0, resumed, started, cancelled}
end
