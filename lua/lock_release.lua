-- lock_release: delete a lock only while it still holds the caller's token (an expired
-- holder cannot release the lock of the holder that came after it).
-- KEYS[1] lock  keys.lock(name)  STRING token
-- ARGV[1] token
-- Returns 1 when released, 0 when the lock is gone or held by another token.  Errors: none.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
