-- start_on_failure: called by finish_run() when a run fails for good (retries spent,
-- non-retriable, timeout, poison): start one run of its job's failure handler (the job's
-- on_failure, published by workers in K.onfail) in the same script as the failure, so a
-- crash cannot separate them. The handler run is keyed by the idempotency key
-- 'on_failure:<run id>:<attempts>': one handler per failure, also if this were replayed
-- (a run retried by hand that fails again gets a new one). A handler run's own failure
-- starts nothing (no handler chains or loops). Its queue: the handler job's published
-- definition's (K.defs 'q|<job>'), else the job map's (K.jobs), else 'default'. Of its
-- rules, the key-less ones a script can apply without reading the payload (K.defs
-- 'p|<job>': priority and Concurrency without key) apply; it is pinned to the handler's
-- highest live version. The payload is msgpack {run_id, job, payload, error = {type,
-- message}}, the failed run's payload bytes spliced in as they are (the default msgpack
-- serializer; jobs with on_failure require it).
-- Returns the handler run id, or nil when there is none.
-- @include keys.lua
-- @include mp_pack.lua
-- @include lua_run_id.lua
-- @include create_run.lua
-- @include pick_version.lua
local function start_on_failure(prefix, rk, id, job, now, keep_ms, err_json)
  local handler = redis.call('HGET', K.on_failure(prefix), job)
  if not handler then return nil end
  local f = redis.call('HMGET', rk, 'failure_of', 'attempts', 'payload')
  if f[1] then return nil end
  local ik = K.idem(prefix, handler, 'on_failure:' .. id .. ':' .. (f[2] or '0'))
  local hid = redis.call('GET', ik)
  if hid and redis.call('EXISTS', K.run(prefix, hid)) == 1 then return hid end
  local ok, err = pcall(cjson.decode, err_json or '{}')
  if not ok or type(err) ~= 'table' then err = {} end
  local payload = string.char(0x84) .. mp_pack('run_id', false) .. mp_pack(id, false)
    .. mp_pack('job', false) .. mp_pack(job, false)
    .. mp_pack('payload', false) .. (f[3] or string.char(0xc0))
    .. mp_pack('error', false) .. string.char(0x82)
    .. mp_pack('type', false) .. mp_pack(tostring(err.type or 'Error'), false)
    .. mp_pack('message', false) .. mp_pack(tostring(err.message or ''), false)
  hid = lua_run_id(prefix, now)
  local d = redis.call('HMGET', K.defs(prefix), 'q|' .. handler, 'p|' .. handler)
  local queue = d[1] or redis.call('HGET', K.jobs(prefix), handler) or 'default'
  local fields = {failure_of = id, idem_key = ik}
  if d[2] then
    local plan = cjson.decode(d[2])
    fields['group'], fields['priority'] = plan['g'], plan['p']
    if plan['s'] then fields['slots'] = cjson.encode(plan['s']) end
  end
  local ver = pick_version(prefix, handler, 0, now)
  if ver ~= 1 then fields['ver'] = ver end
  redis.call('SET', ik, hid, 'PX', keep_ms)
  create_run(prefix, hid, handler, queue, payload, now, now, fields)
  return hid
end
