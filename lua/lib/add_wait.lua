-- add_wait: register a pending wait of a running run: w:<step> = JSON {k = kind, d = due
-- ms or 0, e/s/v = event name, match shape, values key, c = child run id}, the run's count
-- wait_n, and the step-record templates its outcome is made of (recs: {field = bytes}:
-- wr_none, wr_ok, wr_fail, wr_child_to; see settle_step). Event waits join the waiter set.
-- @include keys.lua
local function add_wait(prefix, rk, id, step, meta, recs)
  if meta.k == 'event' then
    redis.call('SADD', K.event_waiters(prefix, meta.e, meta.s, meta.v), id .. '|' .. step)
    redis.call('HINCRBY', K.event_shapes(prefix, meta.e), meta.s, 1)
  end
  local args = {'HSET', rk, 'w:' .. step, cjson.encode(meta)}
  for f, v in pairs(recs) do
    args[#args + 1] = f
    args[#args + 1] = v
  end
  redis.call(unpack(args))
  redis.call('HINCRBY', rk, 'wait_n', 1)
end
