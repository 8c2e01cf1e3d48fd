-- state_incr: add to a state counter; its TTL is set only by the call that creates it.
-- KEYS[1] value  keys.state(name)  STRING decimal integer (counter)
-- ARGV[1] amount (integer)  ARGV[2] ttl_ms (0: no expiry)  ARGV[3] state name (for errors)
-- Returns the new value.  Errors: NOT_INTEGER when the key holds a non-integer or would overflow.
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(value) == 'table' and value.err then
  return redis.error_reply('NOT_INTEGER state ' .. ARGV[3] .. ' is not an integer counter ('
    .. tostring(value.err) .. ')')
end
local ttl = tonumber(ARGV[2])
if created and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return value
