-- finish_run: move a run to a final status in one HSET (status, finished, fields, and the
-- timeline entry {type = new, ...entry}), expire it after keep_ms, wake result() waiters and
-- resume a parent run waiting for it (invoke). pre: {tn, w, parent} already read, or nil.
-- @include key.lua
-- @include move_index.lua
-- @include wake.lua
local function finish_run(prefix, rk, id, job, old, new, now, keep_ms, fields, entry, pre)
  if not pre then
    local p = redis.call('HMGET', rk, 'tn', 'w', 'parent')
    pre = {tn = p[1], w = p[2], parent = p[3]}
  end
  local n = tonumber(pre.tn or '0') + 1
  entry['type'] = new
  entry['at'] = now
  local args = {'HSET', rk, 'status', new, 'finished', now, 'tn', n, 't:' .. n, cjson.encode(entry)}
  for f, v in pairs(fields) do
    args[#args + 1] = f
    args[#args + 1] = v
  end
  redis.call(unpack(args))
  redis.call('HDEL', rk, 'token', 'cancel')
  move_index(prefix, id, job, old, new, now, keep_ms)
  redis.call('PEXPIRE', rk, keep_ms)
  if pre.w then
    redis.call('XADD', key(prefix, 'done'), 'MAXLEN', '~', '10000', '*', 'r', id)
  end
  local parent = pre.parent
  if not parent then return end
  local pk = key(prefix, 'run', parent)
  local p = redis.call('HMGET', pk, 'status', 'wk', 'wc', 'queue')
  if p[1] ~= 'waiting' or p[2] ~= 'child' or p[3] ~= id then return end
  local stream = key(prefix, 'q', p[4], 'stream')
  if new == 'completed' then
    wake(prefix, stream, parent, now, 'child_ok', redis.call('HGET', rk, 'result'))
  else
    local msg = 'child run ' .. id .. ' ' .. new
    local err = redis.call('HGET', rk, 'error')
    if err then msg = msg .. ': ' .. tostring(cjson.decode(err).message) end
    wake(prefix, stream, parent, now, 'child_failed', msg)
  end
end
