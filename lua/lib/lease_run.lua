-- lease_run: lease one run popped from a ready set to the taking worker, or fail it as
-- poison when it was delivered more than max_deliv times without finishing. Returns
-- {id, 'ok', token, attempt, job, payload, trigger event, steps, fails, resumed (0|1),
-- hook fields (flat x:<name> pairs)},
-- {id, 'poison'}, or nil when the run is no longer queued (a stale ready entry).
-- The token is the run's attempt number: unique per claim of that run.
-- @include keys.lua
-- @include move_index.lua
-- @include finish_run.lua
local function lease_run(prefix, id, leases, now, lease_ms, max_deliv, keep_ms)
  local rk = K.run(prefix, id)
  local st = redis.call('HMGET', rk, 'status', 'job', 'deliveries', 'expired')
  if st[1] ~= 'queued' then return nil end
  local deliv = tonumber(st[3] or '0') + 1
  if deliv > max_deliv then
    local msg = 'delivered ' .. (deliv - 1) .. ' times without finishing'
    if st[4] then
      msg = msg .. '; its lease expired ' .. st[4] .. ' times while an attempt was still ' ..
        'running (its worker died, or its event loop was blocked and could not renew the ' ..
        'lease: run blocking calls in a thread)'
    end
    local err = {type = 'PoisonRunError', message = msg, traceback = ''}
    finish_run(prefix, rk, id, st[2], 'queued', 'failed', now, keep_ms,
      {error = cjson.encode(err)}, {error = err.message}, nil)
    return {id, 'poison'}
  end
  -- one read of the whole hash (fields and step records), one write of the transition
  local h = redis.call('HGETALL', rk)
  local v, steps, hooked = {}, {}, {}
  for j = 1, #h, 2 do
    local pre = string.sub(h[j], 1, 2)
    if pre == 's:' then
      steps[#steps + 1] = string.sub(h[j], 3)
      steps[#steps + 1] = h[j + 1]
    elseif pre == 'x:' then
      hooked[#hooked + 1] = string.sub(h[j], 3)
      hooked[#hooked + 1] = h[j + 1]
    elseif pre ~= 't:' then
      v[h[j]] = h[j + 1]
    end
  end
  local attempt = tonumber(v['attempts'] or '0') + 1
  local token = tostring(attempt)
  local n = tonumber(v['tl_len'] or '0') + 1
  local last = redis.call('HGET', rk, 't:' .. (n - 1)) or ''
  local resumed = 0
  if string.find(last, '"type":"resumed"', 1, true) then resumed = 1 end
  local args = {'HSET', rk, 'status', 'running', 'attempts', attempt, 'token', token,
    'deliveries', deliv, 'tl_len', n, 't:' .. n,
    cjson.encode({type = 'started', at = now, attempt = attempt})}
  if not v['started'] then
    args[#args + 1] = 'started'
    args[#args + 1] = now
  end
  redis.call(unpack(args))
  redis.call('ZADD', leases, now + lease_ms, id)
  move_index(prefix, id, st[2], 'queued', 'running', now, 0)
  return {id, 'ok', token, attempt, st[2], v['payload'], v['event'] or '', steps,
    v['fails'] or '0', resumed, hooked}
end
