-- take: the one take path: lease up to n ready runs from a worker's queues, in one call.
-- Within a queue, groups are served round robin (the ring) and each group's runs by
-- priority, then arrival. A paused queue gives none; a queue at its concurrency limit
-- gives up to the limit and marks itself starved (release_lease then adds a ticket).
-- A queue left with nothing to take has its stream emptied: its tickets are stale, and
-- whatever becomes takeable later adds a ticket of its own. A take re-sent by the client
-- (its reply was lost) returns the runs the first call leased: the taker's record holds
-- the last take id and its runs.
-- Flow control (runs of groups other than '0', lib/admit_run.lua): a run leases only with a
-- place in each of its Concurrency slots; a group whose slot is full leaves the ring, parked
-- on that slot, until release_lease frees a place (lib/free_slots.lua): blocked runs are not
-- leased and do not hold up other groups. A run over its throttle goes back to the schedule.
-- KEYS[1]    record  keys.take(taker)          STRING last take id | its runs (JSON, 60 s)
-- KEYS[5i-3] ring    keys.ring(queue_i)        ZSET groups with ready runs, by turn
-- KEYS[5i-2] leases  keys.leases(queue_i)      ZSET run id -> lease expiry ms
-- KEYS[5i-1] conf    keys.queue_conf(queue_i)  HASH paused, concurrency
-- KEYS[5i]   stat    keys.queue_stat(queue_i)  HASH seq (turns), starved
-- KEYS[5i+1] stream  keys.stream(queue_i)      STREAM wake-up tickets
-- Derived (K): ready sets K.ready(queue, group), runs K.run(id), K.leased_queues() (a queue
-- that leased runs joins it: running runs are read from the leases of its queues).
-- ARGV[1] prefix  ARGV[2] n  ARGV[3] max_deliveries  ARGV[4] retention_ms
-- ARGV[5] take id (unique per call)  ARGV[4+2i] queue_i  ARGV[5+2i] lease_ms_i
-- Returns per taken run {run_id, 'ok', token, attempt, job, payload, trigger event, steps,
-- failed tries so far, resumed 0|1, hook fields, schedule, scheduled_at, ms waited since
-- ready, resumed by, queue}, or {run_id, outcome, queue} for 'poison' and 'damaged'
-- (failed) and 'missing' (a foreign entry, dropped). See lib/lease_run.lua.
-- Cost: O(runs taken + groups visited), at most 4n ready-set pops.
-- @include keys.lua
-- @include now_ms.lua
-- @include lease_run.lua
-- @include leased_again.lua
-- @include admit_run.lua
-- @include defer_run.lua
-- @include free_slots.lua
-- @include park_group.lua
local prefix, want = ARGV[1], tonumber(ARGV[2])
local max_deliv, keep_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local out = {}
local taken, pops = 0, 0
local take_id = ARGV[5]
local record = redis.call('GET', KEYS[1]) or ''
if string.sub(record, 1, #take_id + 1) == take_id .. '|' then -- a re-sent call: same runs
  for _, r in ipairs(cjson.decode(string.sub(record, #take_id + 2))) do
    local o = leased_again(prefix, r[2], r[3], now)
    if o then
      o[#o + 1] = r[1]
      out[#out + 1] = o
    end
  end
  return out
end
local leased = {}

local function give(queue, id, leases, lease_ms)
  local o = lease_run(prefix, id, leases, now, lease_ms, max_deliv, keep_ms)
  if not o then return end
  if o[2] ~= 'ok' then free_slots(prefix, id) end -- poison, damaged: places back
  o[#o + 1] = queue
  out[#out + 1] = o
  if o[2] == 'ok' then
    taken = taken + 1
    leased[#leased + 1] = {queue, id, o[3]}
  end
end

local i = 1
while ARGV[4 + 2 * i] and taken < want do
  local queue, lease_ms = ARGV[4 + 2 * i], tonumber(ARGV[5 + 2 * i])
  local ring, leases, conf = KEYS[5 * i - 3], KEYS[5 * i - 2], KEYS[5 * i - 1]
  local stat, stream = KEYS[5 * i], KEYS[5 * i + 1]
  local c = redis.call('HMGET', conf, 'paused', 'concurrency')
  local room = want - taken
  local blocked = false
  if c[1] then room, blocked = 0, true end
  local limit = tonumber(c[2]) or 0
  if limit > 0 and room > 0 then
    local free = limit - redis.call('ZCARD', leases)
    if free <= room then
      redis.call('HSET', stat, 'starved', 1)
      room, blocked = math.max(free, 0), true
    end
  end
  local stop = taken + room
  local before = taken
  while taken < stop and pops < 4 * want do
    local turn = redis.call('ZRANGE', ring, 0, 1)
    local group = turn[1]
    if not group then break end
    local rset = K.ready(prefix, queue, group)
    local count = 1
    if not turn[2] then count = stop - taken end -- one group: no turns to take
    local popped = redis.call('ZPOPMIN', rset, count)
    pops = pops + count
    if #popped > 0 then redis.call('HINCRBY', stat, 'ready', -#popped / 2) end
    if redis.call('EXISTS', rset) == 0 then
      redis.call('ZREM', ring, group)
    else -- its turn is over: to the back of the ring
      redis.call('ZADD', ring, redis.call('HINCRBY', stat, 'seq', 1), group)
    end
    for j = 1, #popped, 2 do
      local wait, arg = nil, nil
      if group ~= '0' then wait, arg = admit_run(prefix, popped[j], now) end
      if wait == 'park' then
        park_group(ring, rset, stat, queue, group, popped, j, arg, now)
        break
      elseif wait == 'later' then
        defer_run(prefix, queue, popped[j], arg, now)
      else
        give(queue, popped[j], leases, lease_ms)
      end
    end
  end
  if blocked or redis.call('EXISTS', ring) == 0 then
    redis.call('XTRIM', stream, 'MAXLEN', 0)
  end
  if taken > before then -- list_runs finds running runs in the leases of these queues
    redis.call('SADD', K.leased_queues(prefix), queue)
  end
  i = i + 1
end
if #leased > 0 then
  redis.call('SET', KEYS[1], take_id .. '|' .. cjson.encode(leased), 'PX', 60000)
end
return out
