-- layout: the namespace's storage layout version, and the lock and cursors of migrating it.
-- KEYS[1] meta  keys.meta()  HASH layout, mig:<step>
-- KEYS[2] lock  keys.migrating()  STRING token of the migrating process
-- KEYS[2+i] markers  keys of the oldest layout (a namespace without them and without a
--   layout is new)
-- ARGV[1] op: check | lock | renew | cursor | finish
-- ARGV[2] this code's layout  ARGV[3] token  ARGV[4] lock ms  ARGV[5] step  ARGV[6] cursor
-- Returns, per op: check: {layout} ('0' when none is recorded and old data exists; a new
--   namespace is given ARGV[2] at once). lock: {1, meta as a flat list} when the lock is
--   taken, {0, ms left} while another process holds it, {2} when the layout is already
--   current. renew, cursor, finish: 1 while the lock is ours, else 0 (finish records
--   ARGV[2] as the layout and drops the lock; cursor stores ARGV[6] as mig:<ARGV[5]>).
-- Errors: none.
local op = ARGV[1]
if op == 'check' then
  local v = redis.call('HGET', KEYS[1], 'layout')
  if v then return {v} end
  if #KEYS > 2 and redis.call('EXISTS', unpack(KEYS, 3)) > 0 then return {'0'} end
  redis.call('HSET', KEYS[1], 'layout', ARGV[2])
  return {ARGV[2]}
end
if op == 'lock' then
  if redis.call('HGET', KEYS[1], 'layout') == ARGV[2] then return {2} end
  if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
    return {1, redis.call('HGETALL', KEYS[1])}
  end
  return {0, redis.call('PTTL', KEYS[2])}
end
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
if op == 'renew' then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
elseif op == 'cursor' then
  redis.call('HSET', KEYS[1], 'mig:' .. ARGV[5], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
elseif op == 'finish' then
  redis.call('HSET', KEYS[1], 'layout', ARGV[2])
  redis.call('DEL', KEYS[2])
end
return 1
