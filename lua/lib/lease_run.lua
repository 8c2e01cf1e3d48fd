-- lease_run: lease one run popped from a ready set to the taking worker. Returns
-- {id, 'ok', token, attempt, job, payload, trigger event, steps, fails, resumed (0|1),
-- hook fields (flat x:<name> pairs), schedule name or '', scheduled_at ms or '', ms waited
-- since made ready, resumed by (see ready_wait), steps of its pending waits, version},
-- {id, 'poison'} (delivered more than max_deliv times without finishing: failed),
-- {id, 'damaged'} (a field is unusable: failed with RunDataError), {id, 'missing'} (no
-- such run: a foreign or expired entry), or nil when the run is no longer queued (a
-- stale ready entry). Fields are checked before anything is written, so a damaged run
-- fails visibly instead of being lost.
-- The token is the run's attempt number: unique per claim of that run.
-- @include keys.lua
-- @include move_index.lua
-- @include finish_run.lua
-- @include split_run.lua
-- @include resumed.lua
-- @include ready_wait.lua
local function lease_run(prefix, id, leases, now, lease_ms, max_deliv, keep_ms)
  local rk = K.run(prefix, id)
  -- one read of the whole hash (fields, step records, timeline), one write of the transition
  local h = redis.call('HGETALL', rk)
  if #h == 0 then return {id, 'missing'} end
  local v, steps, hooked, waits, tl = split_run(h)
  local st = {v['status'], v['job'], v['deliveries'], v['attempts'], v['tl_len'], v['fails'],
    v['payload'], v['expired'], v['out']}
  if st[1] ~= 'queued' then return nil end
  local bad = nil
  if not st[2] then bad = 'job' elseif not st[7] then bad = 'payload' end
  for i, name in ipairs({'deliveries', 'attempts', 'tl_len', 'fails'}) do
    if st[i + 2] and not tonumber(st[i + 2]) then bad = name end
  end
  if bad then
    local err = {type = 'RunDataError', traceback = '',
      message = 'run record is damaged: field ' .. bad .. ' is missing or not a number'}
    finish_run(prefix, rk, id, st[2] or '?', 'queued', 'failed', now, keep_ms,
      {error = cjson.encode(err)}, {error = err.message}, {tl_len = tonumber(st[5]) or 0,
      out = st[9]})
    return {id, 'damaged'}
  end
  local deliv = (tonumber(st[3]) or 0) + 1
  if deliv > max_deliv then
    local msg = 'delivered ' .. (deliv - 1) .. ' times without finishing'
    if st[8] then
      msg = msg .. '; its lease expired ' .. st[8] .. ' times while an attempt was still ' ..
        'running (its worker died, or its event loop was blocked and could not renew the ' ..
        'lease: run blocking calls in a thread)'
    end
    local err = {type = 'PoisonRunError', message = msg, traceback = ''}
    finish_run(prefix, rk, id, st[2], 'queued', 'failed', now, keep_ms,
      {error = cjson.encode(err)}, {error = err.message}, nil)
    return {id, 'poison'}
  end
  local attempt = (tonumber(v['attempts']) or 0) + 1
  local token = tostring(attempt)
  local n = (tonumber(v['tl_len']) or 0) + 1
  local was_resumed, last = resumed(tl['t:' .. (n - 1)])
  local waited, by = ready_wait(last, now)
  local args = {'HSET', rk, 'status', 'running', 'attempts', attempt, 'token', token,
    'deliveries', deliv, 'tl_len', n, 't:' .. n,
    cjson.encode({type = 'started', at = now, attempt = (tonumber(st[6]) or 0) + 1,
      execution = attempt})} -- attempt: fails + 1 (ctx.attempt); execution: takes
  if not v['started'] then
    args[#args + 1] = 'started'
    args[#args + 1] = now
  end
  redis.call(unpack(args))
  redis.call('ZADD', leases, now + lease_ms, id)
  move_index(prefix, id, st[2], 'queued', 'running', now, 0)
  return {id, 'ok', token, attempt, st[2], v['payload'], v['event'] or '', steps,
    v['fails'] or '0', was_resumed, hooked, v['schedule'] or '', v['scheduled_at'] or '',
    waited, by, waits, v['ver'] or '1'}
end
