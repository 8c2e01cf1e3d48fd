-- renew: extend the leases a live worker holds (fenced by each lease token).
-- KEYS[1] leases  keys.leases(queue)  ZSET run id -> lease expiry ms
-- KEYS[1+i] run   keys.run(run_id_i)  HASH
-- ARGV[1] lease_ms (negative: expire now, to hand runs back)  ARGV[2i] run_id_i  ARGV[2i+1] token_i
-- Returns per run 'ok', 'cancel' (renewed; a cancel is pending) or 'lost'.
-- @include now_ms.lua
local expiry = now_ms() + tonumber(ARGV[1])
local out = {}
local i = 1
while ARGV[2 * i] do
  local id, rk = ARGV[2 * i], KEYS[1 + i]
  local f = redis.call('HMGET', rk, 'status', 'token', 'cancel')
  if f[1] == 'running' and f[2] == ARGV[2 * i + 1] then
    redis.call('ZADD', KEYS[1], expiry, id)
    out[i] = f[3] and 'cancel' or 'ok'
  else
    out[i] = 'lost'
  end
  i = i + 1
end
return out
