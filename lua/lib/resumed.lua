-- resumed: 1 when timeline entry n of the run is its 'resumed' entry (the run waited and
-- is continued by the attempt taken after it), else 0.
local function resumed(rk, n)
  local e = redis.call('HGET', rk, 't:' .. n) or ''
  if string.find(e, '"type":"resumed"', 1, true) then return 1 end
  return 0
end
