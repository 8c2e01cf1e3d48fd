-- start_once: one run of `job`, idempotently: one pass of lua/start.lua's loop (and a
-- transactional step's start, lua/transact.lua). rk, ik: the run's key
-- and its idempotency key (rk again when none); `extra` hook fields (read only). Returns
-- run id ('' when skipped), deduplicated 0|1 and the skip reason ('' | 'rate_limited' |
-- 'singleton'); a run id that exists already (a retried call) is returned as it is.
-- @include keys.lua
-- @include start_run.lua
local function start_once(prefix, job, queue, rk, ik, id, has_idem, payload, plan_json,
    extra, now, due, keep, idem_ttl)
  local existing = false
  if has_idem then
    existing = redis.call('GET', ik)
    if existing and redis.call('EXISTS', K.run(prefix, existing)) == 0 then
      existing = false
    end
  end
  local rid, dedup, skipped = id, 0, ''
  if existing and existing ~= id then
    rid, dedup = existing, 1
  elseif not existing and redis.call('EXISTS', rk) == 0 then -- (else a client retry)
    local plan = nil
    if plan_json ~= '' then plan = cjson.decode(plan_json) end
    local fields = extra
    if has_idem then
      fields = {idem_key = ik}
      for f, v in pairs(extra) do fields[f] = v end
    end
    rid, dedup, skipped = start_run(prefix, job, queue, id, payload, plan, now, due, keep,
      fields)
    if has_idem and rid ~= '' then redis.call('SET', ik, rid, 'PX', idem_ttl) end
  end
  return rid, dedup, skipped
end
