-- layout: the namespace's storage layout version, and the lock and cursors of migrating it
-- (stackshift_redis/_core/layout.py says how they are used).
-- KEYS[1] meta     keys.meta()  HASH layout, next (the layout a migration under way leads
--   to), mig:<step> (a step's cursor, 'done' once finished), migrated_at, migrated_from,
--   swept_at (ms), seen:<layout> (ms of the latest check by a process of that layout)
-- KEYS[2] lock     keys.migrating()  STRING token of the process migrating or sweeping
-- KEYS[3] workers  keys.workers()  ZSET worker id -> heartbeat expiry ms
-- KEYS[4] winfo    keys.worker_info()  HASH worker id -> JSON {..., layout} (none: layout 1)
-- KEYS[4+i] markers  keys that a namespace of layout 1 with any data has
-- ARGV[1] op: check | lock | sweep | renew | cursor | finish | unlock | swept
-- ARGV[2] this code's layout  ARGV[3] token  ARGV[4] lock ms  ARGV[5] step
-- ARGV[6] cursor (finish: the layout migrated from, 0 for a new namespace)
-- ARGV[7] sweep: the least ms between two sweeps
-- ARGV[8] check: 1 = also report the oldest layout among live workers
-- ARGV[9] check: this process's partition count (partitions.py)
-- Returns, per op:
--   check: {layout (0: none recorded), next (0: none), old data (1: markers found),
--     oldest live worker layout (0: none or not asked), migrated_at, migrated_from,
--     swept_at, now, partitions}. A process of an older layout than `layout` or `next` is
--     refused, and so is one whose partition count (ARGV[9]) is not the recorded one
--     (`partitions`, only written when above 1; a namespace with a layout or old data and
--     none recorded has 1): nothing is written, and `partitions` is the recorded count (a
--     count above 1 that differs is told before a newer layout: a namespace with
--     partitions records layout 5 or more, layout.py PARTITIONED).
--     Otherwise `seen:<ARGV[2]>` is set to now (one write per check), and a new namespace
--     records its layout (and its partition count above 1); `partitions` is then 0.
--   lock: {1, meta as a flat list, now} when the lock is taken (`next` set to ARGV[2]),
--     {0, ms left} while another process holds it, {2} when the layout is current,
--     {3, layout, next} when a newer layout was recorded or a newer migration began.
--   sweep: 1 when the lock is taken for a sweep (the layout is current, no migration is
--     under way, the last sweep ended ARGV[7] ms ago or more), else 0.
--   renew, cursor, finish, unlock, swept: 1 while the lock is ours, else 0. cursor stores
--     ARGV[6] as mig:<ARGV[5]>; finish records ARGV[2] as the layout (migrated_at,
--     migrated_from; `next` dropped); swept records swept_at; all three but renew and
--     cursor drop the lock.
-- Errors: none. Cost: O(1), check with ARGV[8]: O(live workers), at most 500.
-- @include now_ms.lua
local op, mine = ARGV[1], tonumber(ARGV[2])
local function num(field) return tonumber(redis.call('HGET', KEYS[1], field) or '0') end

if op == 'check' then
  local now = now_ms()
  local layout, nxt = num('layout'), num('next')
  local parts, recorded = tonumber(ARGV[9] or '1'), num('partitions')
  if recorded > 1 and recorded ~= parts then return {layout, nxt, 0, 0, 0, 0, 0, now, recorded} end
  if layout > mine or nxt > mine then return {layout, nxt, 0, 0, 0, 0, 0, now, 0} end
  local old = 0
  if layout == 0 and #KEYS > 4 and redis.call('EXISTS', unpack(KEYS, 5)) > 0 then old = 1 end
  if recorded == 0 and (layout ~= 0 or old == 1) then recorded = 1 end
  if recorded ~= 0 and recorded ~= parts then return {layout, nxt, old, 0, 0, 0, 0, now, recorded} end
  if layout == 0 and old == 0 then  -- a new namespace: given this layout, no step to run
    redis.call('HSET', KEYS[1], 'layout', mine)
    if parts > 1 then redis.call('HSET', KEYS[1], 'partitions', parts) end
    layout = mine
  end
  redis.call('HSET', KEYS[1], 'seen:' .. mine, now)
  local oldest = 0
  if ARGV[8] == '1' then
    local ids = redis.call('ZRANGEBYSCORE', KEYS[3], now, '+inf', 'LIMIT', 0, 500)
    if #ids > 0 then
      for _, raw in ipairs(redis.call('HMGET', KEYS[4], unpack(ids))) do
        if raw then
          local ok, info = pcall(cjson.decode, raw)
          local l = 1
          if ok and type(info) == 'table' and type(info.layout) == 'number' then l = info.layout end
          if oldest == 0 or l < oldest then oldest = l end
        end
      end
    end
  end
  return {layout, nxt, old, oldest, num('migrated_at'), num('migrated_from'), num('swept_at'),
          now, 0}
end

if op == 'lock' then
  local layout, nxt = num('layout'), num('next')
  if layout > mine or nxt > mine then return {3, layout, nxt} end
  if layout == mine then return {2} end
  if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then
    redis.call('HSET', KEYS[1], 'next', mine)
    return {1, redis.call('HGETALL', KEYS[1]), now_ms()}
  end
  return {0, redis.call('PTTL', KEYS[2])}
end

if op == 'sweep' then
  if num('layout') ~= mine or num('next') ~= 0 then return 0 end
  if now_ms() - num('swept_at') < tonumber(ARGV[7]) then return 0 end
  if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return 1 end
  return 0
end

if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
if op == 'renew' then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
elseif op == 'cursor' then
  redis.call('HSET', KEYS[1], 'mig:' .. ARGV[5], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
elseif op == 'finish' then
  redis.call('HSET', KEYS[1], 'layout', mine, 'migrated_at', now_ms(), 'migrated_from', ARGV[6])
  redis.call('HDEL', KEYS[1], 'next')
  redis.call('DEL', KEYS[2])
elseif op == 'swept' then
  redis.call('HSET', KEYS[1], 'swept_at', now_ms())
  redis.call('DEL', KEYS[2])
elseif op == 'unlock' then
  redis.call('DEL', KEYS[2])
end
return 1
