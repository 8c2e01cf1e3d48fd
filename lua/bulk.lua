-- bulk: one bounded batch of cancel_runs / retry_runs. Examines up to `limit` entries of one
-- status index after a cursor, in index order (score, then run id), re-checks each run
-- (status, job, creation time) and cancels (lib/cancel_run.lua) or retries
-- (lib/retry_run.lua) those that match. Entries that entered the index after `upto` (the
-- server time of the operation's first batch) are not examined, so a pass ends even while
-- runs keep arriving and a retried run that fails again is not retried twice.
-- KEYS[1] index  keys.idx_status(status) or keys.idx_job_status(job, status)  ZSET; for
--   queued (no time index) keys.ord_status / keys.ord_job_status, all scores 0 (ARGV[14]
--   'id'): a run's entry time there is its creation time, read from its id; for running
--   (no index) one queue's keys.leases (ARGV[14] 'lease': scored by lease expiry, which
--   only grows, so a renewed run may be examined again, and is then skipped)
-- ARGV[1] prefix  ARGV[2] action ('cancel' | 'retry')  ARGV[3] status  ARGV[4] job ('': any)
-- ARGV[5] created after ms (-1: none)  ARGV[6] created before ms (-1: none)
-- ARGV[7] cursor score ('': from the start)  ARGV[8] cursor run id  ARGV[9] upto ('': now)
-- ARGV[10] limit  ARGV[11] cancel reason  ARGV[12] retention_ms  ARGV[13] budget µs
-- ARGV[14] the order of KEYS[1]: 'time' (entry time), 'id' (scores 0) or 'lease'
-- Returns {runs changed, next cursor score ('' when the pass is over), next cursor run id,
-- upto}.
-- Cost: at most `limit` runs and about `budget` µs of server time (the batch stops early
-- once it has used its budget; a cancel may follow a chain of up to 32 waited-for
-- children), plus O(log^2 n) to find the cursor's rank: a run changed here leaves the
-- index, so the cursor is a position (score, id), not a rank.
-- @include keys.lua
-- @include now_ms.lua
-- @include cancel_run.lua
-- @include retry_run.lua
local key, prefix, action, status, job = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local after, before = tonumber(ARGV[5]), tonumber(ARGV[6])
local limit, reason, keep = tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12])
local budget = tonumber(ARGV[13])
local by_id, by_lease = ARGV[14] == 'id', ARGV[14] == 'lease'
local function created_ms(id) -- run ids begin with their creation ms as 11 hex digits
  return tonumber(string.sub(id, 1, 11), 16) or 0
end
local now = now_ms()
local function clock_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local t0 = clock_us()
local upto = ARGV[9]
if upto == '' then upto = tostring(now) end
local start = 0
if ARGV[7] ~= '' then
  -- the rank of the first entry after (score, id): entries of one score sort by id
  local score, last = ARGV[7], ARGV[8]
  local lo = redis.call('ZCOUNT', key, '-inf', '(' .. score)
  local hi = redis.call('ZCOUNT', key, '-inf', score)
  for _ = 1, 64 do
    if lo >= hi then break end
    local mid = math.floor((lo + hi) / 2)
    if redis.call('ZRANGE', key, mid, mid)[1] <= last then lo = mid + 1 else hi = mid end
  end
  start = lo
elseif after >= 0 and by_id then -- ids created before `after`
  start = redis.call('ZLEXCOUNT', key, '-', '(' .. string.format('%011x', after))
elseif after >= 0 and not by_lease then
  -- a run enters a status no earlier than it was created: skip what entered before `after`
  start = redis.call('ZCOUNT', key, '-inf', '(' .. after)
end
local page = redis.call('ZRANGE', key, start, start + limit - 1, 'WITHSCORES')
local changed, cursor, cursor_id = 0, '', ''
local over = #page < 2 * limit -- the index ends within this page
for j = 1, #page, 2 do
  local id, score = page[j], page[j + 1]
  local entered = tonumber(score)
  if by_id then entered = created_ms(id) elseif by_lease then entered = 0 end
  if entered > tonumber(upto) then
    over = true
    break
  end
  if j > 1 and clock_us() - t0 >= budget then
    over = false -- out of time: the next batch goes on from here
    break
  end
  cursor, cursor_id = score, id
  local rk = K.run(prefix, id)
  local f = redis.call('HMGET', rk, 'status', 'job', 'queue', 'group', 'priority', 'created',
    'cancel', 'out')
  local created = tonumber(f[6] or '-1')
  if f[1] == status and (job == '' or f[2] == job) and (after < 0 or created >= after)
      and (before < 0 or created < before) then
    if action == 'retry' then
      retry_run(prefix, rk, id, f, now, f[8])
      changed = changed + 1
    elseif not (status == 'running' and f[7]) then -- a running run flagged already: skip
      local out = cancel_run(prefix, id, reason, now, keep)
      if out then changed = changed + out[2] end
    end
  end
end
if over then cursor = '' end
return {changed, cursor, cursor_id, upto}
