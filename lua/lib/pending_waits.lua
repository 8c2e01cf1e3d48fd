-- pending_waits: a run's pending waits as {{step, meta}, ...} (one HKEYS of the run; only
-- called when it has some: wait_n > 0).
local function pending_waits(rk)
  local out = {}
  if not redis.call('HGET', rk, 'wait_n') then return out end
  for _, f in ipairs(redis.call('HKEYS', rk)) do
    if string.sub(f, 1, 2) == 'w:' then
      out[#out + 1] = {string.sub(f, 3), cjson.decode(redis.call('HGET', rk, f))}
    end
  end
  return out
end
