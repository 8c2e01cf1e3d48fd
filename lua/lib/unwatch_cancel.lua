-- unwatch_cancel: drop a run's CancelOn registrations (see watch_cancel); only `entry` =
-- {event, shape, values key} when given, else all of them.
-- @include keys.lua
local function unwatch_cancel(prefix, rk, id, cxl, entry)
  local keep = {}
  for _, c in ipairs(cjson.decode(cxl)) do
    if entry and (c[1] ~= entry[1] or c[2] ~= entry[2] or c[3] ~= entry[3]) then
      keep[#keep + 1] = c
    elseif redis.call('SREM', K.event_waiters(prefix, c[1], c[2], c[3]), '!' .. id) == 1 then
      local shapes = K.event_shapes(prefix, c[1])
      if redis.call('HINCRBY', shapes, c[2], -1) <= 0 then redis.call('HDEL', shapes, c[2]) end
    end
  end
  if #keep > 0 then
    redis.call('HSET', rk, 'cxl', cjson.encode(keep))
  else
    redis.call('HDEL', rk, 'cxl')
  end
end
