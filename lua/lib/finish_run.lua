-- finish_run: move a run to a final status in one HSET (status, finished, fields, and the
-- timeline entry {type = new, ...entry}), expire it after keep_ms, wake result() waiters and
-- settle the parent's wait for it (invoke), resuming the parent if it is parked. Its own
-- pending waits are dropped (waits its handler no longer awaited; children keep running).
-- pre: {tl_len, awaited, parent, wait_n, out} already read (with flow = true: cxl, sgl,
-- cancel and err (the error field) too), or nil. A completed run loses the error of an earlier attempt (its timeline has it). The caller has released
-- the run's lease, if it had one. The run keeps its last lease token, so a finish re-sent
-- after a lost reply is recognised (see done_by). A run that fails starts its job's
-- failure handler here, atomically (lib/start_on_failure.lua). A run with an output stream
-- (`out`: it published, or a reader follows it) ends the stream with an {e = status} entry
-- and expires it with the run; a run without one pays nothing for streams. A completed or
-- failed run is counted in its queue's per-minute buckets (lib/minute_counts.lua; pre.queue,
-- else one HGET). A parent on another partition is settled through the outbox.
-- @include keys.lua
-- @include move_index.lua
-- @include adopt_wait.lua
-- @include drop_waits.lua
-- @include settle_step.lua
-- @include resume_waiting.lua
-- @include start_on_failure.lua
-- @include flow_done.lua
-- @include out_id.lua
-- @include minute_counts.lua
-- @include elsewhere.lua
local function finish_run(prefix, rk, id, job, old, new, now, keep_ms, fields, entry, pre)
  flow_done(prefix, rk, id, pre)
  if not pre then
    local p = redis.call('HMGET', rk, 'tl_len', 'awaited', 'parent', 'wait_n', 'out', 'queue')
    pre = {tl_len = p[1], awaited = p[2], parent = p[3], wait_n = p[4], out = p[5],
      queue = p[6]}
  end
  if pre.wait_n then drop_waits(prefix, rk, id) end
  if new == 'failed' then -- on_failure: the handler run's id goes in the 'failed' entry
    entry['on_failure_run'] = start_on_failure(prefix, rk, id, job, now, keep_ms,
      fields['error'])
  end
  local n = (tonumber(pre.tl_len) or 0) + 1
  entry['type'] = new
  entry['at'] = now
  local args = {'HSET', rk, 'status', new, 'finished', now, 'tl_len', n, 't:' .. n,
    cjson.encode(entry)}
  for f, v in pairs(fields) do
    args[#args + 1] = f
    args[#args + 1] = v
  end
  local end_id = pre.out and out_id(pre.out, now)
  if end_id then
    args[#args + 1] = 'out'
    args[#args + 1] = end_id
  end
  redis.call(unpack(args))
  -- the token stays: a re-sent finish sees it was done
  if pre.flow then -- cancel and error were read: delete only what is there
    local gone = {}
    if pre.cancel then gone[#gone + 1] = 'cancel' end
    if pre.err and new == 'completed' then gone[#gone + 1] = 'error' end
    if #gone > 0 then redis.call('HDEL', rk, unpack(gone)) end
  elseif new == 'completed' then
    redis.call('HDEL', rk, 'cancel', 'error')
  else
    redis.call('HDEL', rk, 'cancel')
  end
  move_index(prefix, id, job, old, new, now, keep_ms)
  if end_id then -- the output stream: its readers learn of the end; it expires with the run
    local ok = K.output(prefix, id) -- (first: an expiry set a ms later would outlive the run)
    redis.call('XADD', ok, end_id, 'e', new)
    redis.call('PEXPIRE', ok, keep_ms)
  end
  redis.call('PEXPIRE', rk, keep_ms)
  if new ~= 'cancelled' then
    minute_counts(prefix, pre.queue or redis.call('HGET', rk, 'queue') or '', new, now)
  end
  if pre.awaited then
    redis.call('XADD', K.done(prefix), 'MAXLEN', '~', '10000', '*', 'r', id)
  end
  local parent = pre.parent
  if not parent then return end
  local prk, step = K.run(prefix, parent), redis.call('HGET', rk, 'parent_step')
  local cause, value = 'child_ok', nil
  if new == 'completed' then
    value = redis.call('HGET', rk, 'result')
  else
    cause, value = 'child_failed', 'child run ' .. id .. ' ' .. new
    local err = redis.call('HGET', rk, 'error')
    if err then value = value .. ': ' .. tostring(cjson.decode(err).message) end
  end
  if elsewhere(prefix, parent) then -- the parent's partition settles it (apply_outbox)
    redis.call('XADD', K.outbox(prefix), '*', 'a', 'settle', 'run', parent, 'step', step,
      'cause', cause, 'value', value or '', 'child', id)
    return
  end
  local settled = settle_step(prefix, prk, parent, step, cause, value, now, id)
  if not settled and adopt_wait(prefix, prk, parent) then -- parked by an older version
    settled = settle_step(prefix, prk, parent, step, cause, value, now, id)
  end
  if settled then
    resume_waiting(prefix, prk, parent, now, cause)
  end
end
