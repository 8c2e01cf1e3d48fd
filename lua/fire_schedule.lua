-- fire_schedule: fire a schedule's due ticks and advance it, atomically: exactly one caller
-- wins a tick (compare-and-set on the stored next fire time and definition rev), each
-- tick's run is created through start_run under its job's published rules (ready now, or
-- scheduled at tick + jitter; flow control may delay, merge or skip it), pinned to the
-- job's highest live version, and overlap is decided here. A tick at or before `last_tick` (the newest tick handled) is
-- never fired again, should it be planned again (a server clock set back): the second
-- guard, kept in the schedule's hash instead of a key per tick.
-- KEYS[1] sched   keys.schedule(name)  HASH the schedule
-- KEYS[2] scheds  keys.schedules()     ZSET name -> next fire ms
-- ARGV[1] prefix  ARGV[2] name  ARGV[3] expected next fire ms  ARGV[4] expected rev
-- ARGV[5] new next fire ms  ARGV[6] retention_ms  ARGV[7] n ticks
-- ARGV[8] definitions revision (lib/defs_rev.lua)  ARGV[9] the runs' plan JSON (flow.py) or ''
-- ARGV[7+3i] tick_i ms  ARGV[8+3i] run_id_i  ARGV[9+3i] jitter_i ms
-- Overlap: 'skip' creates no run while the last run is unfinished, 'cancel_other' cancels
-- it (see lib/cancel_run.lua), 'allow' creates regardless.
-- Returns {'fired', {created run ids}, skipped count} or {'stale'} (another caller won,
-- the schedule changed, is paused or gone, or is not due by the server clock). A tick
-- whose run flow control skipped (rate limit, singleton) counts as skipped.
-- Errors: STALE when the definitions changed since ARGV[8] (nothing written).
-- Cost: O(n) with n <= 100.
-- @include keys.lua
-- @include now_ms.lua
-- @include start_run.lua
-- @include cancel_run.lua
-- @include defs_rev.lua
-- @include pick_version.lua
-- @include with_version.lua
local prefix, name, sk = ARGV[1], ARGV[2], KEYS[1]
local f = redis.call('HMGET', sk, 'next', 'rev', 'paused', 'job', 'queue', 'payload',
  'overlap', 'last_run', 'last_tick')
if not f[2] or f[1] ~= ARGV[3] or f[2] ~= ARGV[4] or f[3] then return {'stale'} end
local now = now_ms()
if tonumber(ARGV[3]) > now then return {'stale'} end
local stale = defs_rev(prefix, ARGV[8])
if stale then return stale end
local plan = nil
if ARGV[9] ~= '' then plan = cjson.decode(ARGV[9]) end
local job, queue, payload, overlap, last = f[4], f[5], f[6], f[7], f[8]
local keep, handled = tonumber(ARGV[6]), tonumber(f[9] or '0')
local created, skipped = {}, 0
local ver = pick_version(prefix, job, 0, now)
for i = 1, tonumber(ARGV[7]) do
  local tick, id, jit = tonumber(ARGV[7 + 3 * i]), ARGV[8 + 3 * i], tonumber(ARGV[9 + 3 * i])
  if tick > handled then -- (else this tick was handled already)
    handled = tick
    local busy = false
    if last and overlap ~= 'allow' then
      local st = redis.call('HGET', K.run(prefix, last), 'status')
      busy = st and st ~= 'completed' and st ~= 'failed' and st ~= 'cancelled'
    end
    if busy and overlap == 'skip' then
      skipped = skipped + 1
    else
      if busy then
        cancel_run(prefix, last, 'cancelled by schedule ' .. name .. ': a newer tick started',
          now, keep)
      end
      local rid, merged, why = start_run(prefix, job, queue, id, payload, plan, now,
        tick + jit, keep, with_version({schedule = name, scheduled_at = tick}, ver))
      if rid == '' then
        skipped = skipped + 1
      else
        if merged == 0 then created[#created + 1] = rid end
        last = rid
      end
    end
  end
end
redis.call('HSET', sk, 'next', ARGV[5], 'last_tick', handled)
if last then redis.call('HSET', sk, 'last_run', last) end
redis.call('ZADD', KEYS[2], ARGV[5], name)
return {'fired', created, skipped}
