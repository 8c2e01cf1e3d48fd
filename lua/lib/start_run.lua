-- start_run: create one run of `job` under its flow-control plan (decoded JSON, or nil for
-- a job without rules; see stackshift_redis/_core/flow.py): an open debounce burst takes it in
-- (merge), the rate limit or singleton may skip it, the throttle and debounce decide when it
-- is due; otherwise it is created (create_run) and noted in its rules' state. `fields`
-- (read only) are extra run hash fields. Returns run id (or '' when skipped), deduplicated
-- 0|1 (1: merged into a debounce burst) and the skip reason ('' | 'rate_limited' |
-- 'singleton').
-- @include keys.lua
-- @include create_run.lua
-- @include flow_gate.lua
-- @include debounce_merge.lua
-- @include throttle_at.lua
-- @include flow_created.lua
local function start_run(prefix, job, queue, id, payload, plan, now, due, keep, fields)
  if not plan then
    create_run(prefix, id, job, queue, payload, now, due, fields)
    return id, 0, ''
  end
  if plan['d'] then
    local merged = debounce_merge(prefix, job, plan, payload, now)
    if merged then return merged, 1, '' end
  end
  local skipped = flow_gate(prefix, job, plan, id, now, keep)
  if skipped then return '', 0, skipped end
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  if plan['g'] then f['group'] = plan['g'] end
  if plan['s'] then f['slots'] = cjson.encode(plan['s']) end
  if plan['p'] then f['priority'] = plan['p'] end
  local t = plan['t']
  if t then
    due = throttle_at(prefix, job, t, due)
    f['thr'] = cjson.encode({t[1], t[2], t[3] + t[4]})
  end
  local d = plan['d']
  if d then
    local wait = d[2]
    if d[3] > 0 then wait = math.min(wait, d[3]) end
    due = math.max(due, now + wait)
  end
  create_run(prefix, id, job, queue, payload, now, due, f)
  flow_created(prefix, job, K.run(prefix, id), id, plan, now, due)
  return id, 0, ''
end
