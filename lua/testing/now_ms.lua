-- now_ms: TestEnv's variant (luasrc.source with a clock key): the virtual time in integer
-- milliseconds that the TestEnv keeps in CLOCK_KEY (keys.clock(), declared by luasrc
-- above this function), or the Redis server clock while that key is unset. Only scripts
-- rendered for a TestEnv include it; production scripts include lua/lib/now_ms.lua.
local function now_ms()
  local v = redis.call('GET', CLOCK_KEY)
  if v then return tonumber(v) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
