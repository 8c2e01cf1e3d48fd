-- park_run: at a quiet moment of an attempt (every branch of the handler awaits a durable
-- wait: the pending steps `steps`), settle the waits among them that are over (a due
-- timer). When any of `steps` has its record, return {step, record, ...} and the attempt
-- goes on with them. Else drop the run's other pending waits (registered earlier, no
-- longer awaited), park it until the first of `steps` settles and return {}.
-- Returns nil, step when a listed step has neither a record nor a wait, and nil, nil
-- when a cancel was requested for the run (it is not parked: the attempt stops).
-- f: check_lease() fields.
-- @include pending_waits.lua
-- @include settle_step.lua
-- @include suspend_run.lua
local function park_run(prefix, rk, id, f, steps, now)
  if redis.call('HEXISTS', rk, 'cancel') == 1 then return nil, nil end
  local settled, due, kinds, listed = {}, 0, {}, {}
  for i, step in ipairs(steps) do
    listed[step] = true
    local rec = redis.call('HGET', rk, 's:' .. step)
    if not rec then
      local raw = redis.call('HGET', rk, 'w:' .. step)
      if not raw then return nil, step end
      local w = cjson.decode(raw)
      kinds[i] = w.k
      if w.d > 0 and w.d <= now then
        settle_step(prefix, rk, id, step, 'timer', nil, now, nil)
        rec = redis.call('HGET', rk, 's:' .. step)
      elseif w.d > 0 and (due == 0 or w.d < due) then
        due = w.d
      end
    end
    if rec then
      settled[#settled + 1] = step
      settled[#settled + 1] = rec
    end
  end
  if #settled > 0 then return settled end
  if tonumber(redis.call('HGET', rk, 'wait_n') or '0') > #steps then
    for _, p in ipairs(pending_waits(rk)) do
      if not listed[p[1]] then unregister_wait(prefix, rk, id, p[1], p[2]) end
    end
  end
  suspend_run(prefix, rk, id, f[2], f[3], now, due, steps, kinds)
  return settled
end
