-- lock_extend: reset a lock's TTL only while it still holds the caller's token.
-- KEYS[1] lock  keys.lock(name)  STRING token
-- ARGV[1] token  ARGV[2] ttl_ms
-- Returns 1 when extended, 0 when the lock is gone or held by another token.  Errors: none.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
