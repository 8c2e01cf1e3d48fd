-- claim: lease the runs of stream entries delivered to a worker (XREADGROUP), in one call.
-- KEYS[1] stream  keys.stream(queue)      STREAM entries are acked and deleted here
-- KEYS[2] leases  keys.leases(queue)      ZSET run id -> lease expiry ms
-- KEYS[3] conf    keys.queue_conf(queue)  HASH concurrency limit (field concurrency)
-- KEYS[3+i] run   keys.run(run_id_i)      HASH
-- ARGV[1] prefix  ARGV[2] group  ARGV[3] lease_ms  ARGV[4] max_deliveries  ARGV[5] retention_ms
-- ARGV[4+2i] entry_id_i  ARGV[5+2i] run_id_i
-- Returns per entry {run_id, outcome, token, executions, job, payload, trigger event, steps,
-- failed tries so far}:
-- outcome 'ok' (leased; token = entry id), 'skip' (dropped: the run is not queued, e.g. a
-- duplicate entry, or the entry is no longer pending, i.e. a stale copy of an entry already
-- claimed or released: so each entry id is a lease token at most once),
-- 'defer' (queue at its concurrency limit: entry left pending) or 'poison' (failed).
-- @include key.lua
-- @include now_ms.lua
-- @include move_index.lua
-- @include finish_run.lua
local prefix, group = ARGV[1], ARGV[2]
local lease_ms, max_deliv, keep_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local limit = tonumber(redis.call('HGET', KEYS[3], 'concurrency') or '0') or 0
local now = now_ms()
local out = {}
local i = 1
while ARGV[4 + 2 * i] do
  local eid, id, rk = ARGV[4 + 2 * i], ARGV[5 + 2 * i], KEYS[3 + i]
  local st = redis.call('HMGET', rk, 'status', 'job', 'deliv')
  if #redis.call('XPENDING', KEYS[1], group, eid, eid, 1) == 0 then
    out[i] = {id, 'skip'}
  elseif st[1] ~= 'queued' then
    redis.call('XACK', KEYS[1], group, eid)
    redis.call('XDEL', KEYS[1], eid)
    out[i] = {id, 'skip'}
  elseif limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then
    out[i] = {id, 'defer'}
  else
    redis.call('XACK', KEYS[1], group, eid)
    redis.call('XDEL', KEYS[1], eid)
    local deliv = tonumber(st[3] or '0') + 1
    if deliv > max_deliv then
      local err = {type = 'PoisonRunError',
        message = 'delivered ' .. (deliv - 1) .. ' times without finishing', traceback = ''}
      finish_run(prefix, rk, id, st[2], 'queued', 'failed', now, keep_ms,
        {error = cjson.encode(err)}, {error = err.message}, nil)
      out[i] = {id, 'poison'}
    else
      -- one read of the whole hash (fields and step records), one write of the transition
      local h = redis.call('HGETALL', rk)
      local v, steps = {}, {}
      for j = 1, #h, 2 do
        local pre = string.sub(h[j], 1, 2)
        if pre == 's:' then
          steps[#steps + 1] = string.sub(h[j], 3)
          steps[#steps + 1] = h[j + 1]
        elseif pre ~= 't:' then
          v[h[j]] = h[j + 1]
        end
      end
      local attempt = tonumber(v['attempts'] or '0') + 1
      local n = tonumber(v['tn'] or '0') + 1
      local args = {'HSET', rk, 'status', 'running', 'attempts', attempt, 'token', eid,
        'deliv', deliv, 'tn', n, 't:' .. n,
        cjson.encode({type = 'started', at = now, attempt = attempt})}
      if not v['started'] then
        args[#args + 1] = 'started'
        args[#args + 1] = now
      end
      redis.call(unpack(args))
      redis.call('ZADD', KEYS[2], now + lease_ms, id)
      move_index(prefix, id, st[2], 'queued', 'running', now, 0)
      out[i] = {id, 'ok', eid, attempt, st[2], v['payload'], v['evt'] or '', steps,
        v['fails'] or '0'}
    end
  end
  i = i + 1
end
return out
