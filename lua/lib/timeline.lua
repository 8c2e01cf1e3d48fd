-- timeline: append an entry {type, at, ...extra} to a run's timeline (t:<n> fields).
local function timeline(rk, now, kind, extra)
  local n = redis.call('HINCRBY', rk, 'tl_len', 1)
  local e = extra or {}
  e['type'] = kind
  e['at'] = now
  redis.call('HSET', rk, 't:' .. n, cjson.encode(e))
end
