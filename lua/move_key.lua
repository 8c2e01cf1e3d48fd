-- move_key: give a key of an older layout its name now (_core/migrate_keys.py), in one
-- step: RENAME when the new name is free (the TTL goes with it), else merge the old key
-- into the new one and delete it: sets and sorted sets add the members the new key lacks
-- (the new key's scores win), hashes the fields it lacks (counters, ARGV[1] 'sum', add up),
-- strings and streams keep the new key. A run hash field that names the old key (`sgl`,
-- `idem_key`) names the new one.
-- KEYS[1] old  the key's name in the older layout
-- KEYS[2] new  its name now
-- KEYS[3] run  a run hash whose field ARGV[2] may name the old key (else the old key again)
-- ARGV[1] 'sum' | 'keep' (how a hash merges)  ARGV[2] that run field ('' for none)
-- Returns 1 when it moved the key, 0 when there was nothing to move.
-- Cost: O(1) for a rename; a merge is O(n) in the old key's size (it cannot happen while
-- the migration holds the layout lock: no process writes new names before it ends).
local old, new = KEYS[1], KEYS[2]
if redis.call('EXISTS', old) == 0 then return 0 end
if ARGV[2] ~= '' and redis.call('HGET', KEYS[3], ARGV[2]) == old then
  redis.call('HSET', KEYS[3], ARGV[2], new)
end
if redis.call('EXISTS', new) == 0 then
  redis.call('RENAME', old, new)
  return 1
end
local kind = redis.call('TYPE', old)['ok']
if kind == 'set' then
  for _, m in ipairs(redis.call('SMEMBERS', old)) do redis.call('SADD', new, m) end
elseif kind == 'zset' then
  local items = redis.call('ZRANGE', old, 0, -1, 'WITHSCORES')
  for i = 1, #items, 2 do redis.call('ZADD', new, 'NX', items[i + 1], items[i]) end
elseif kind == 'hash' then
  local items = redis.call('HGETALL', old)
  for i = 1, #items, 2 do
    if ARGV[1] == 'sum' and tonumber(items[i + 1]) then
      redis.call('HINCRBY', new, items[i], tonumber(items[i + 1]))
    else
      redis.call('HSETNX', new, items[i], items[i + 1])
    end
  end
end
redis.call('DEL', old)
return 1
