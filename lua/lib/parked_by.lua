-- parked_by: true when the run is parked (waiting) under lease token `token`: this attempt
-- parked it, and the call is one that came after the park or was re-sent after a lost reply.
local function parked_by(rk, token)
  local s = redis.call('HMGET', rk, 'status', 'token')
  return s[1] == 'waiting' and s[2] == token
end
