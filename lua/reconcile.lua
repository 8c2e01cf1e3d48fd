-- reconcile: walk a bounded batch of the queued index and repair what a crash or damaged
-- data left behind: a queued run missing from its ready set is made ready again (or failed
-- with RunDataError when its record is unusable); entries of runs that are gone, or no
-- longer queued, leave the index. A run held for its version (`unsv`) is left alone.
-- KEYS[1] queued  keys.ord_status('queued')  ZSET queued run ids (scores 0, by id)
-- ARGV[1] prefix  ARGV[2] start rank  ARGV[3] limit  ARGV[4] retention_ms
-- Returns {checked, repaired, next start rank (0 when the walk reached the end)}.
-- Cost: O(limit).
-- @include keys.lua
-- @include now_ms.lua
-- @include make_ready.lua
-- @include finish_run.lua
local prefix, start, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local ids = redis.call('ZRANGE', KEYS[1], start, start + limit - 1)
local repaired, dropped = 0, 0
for _, id in ipairs(ids) do
  local rk = K.run(prefix, id)
  local f = redis.call('HMGET', rk, 'status', 'queue', 'group', 'job', 'priority', 'payload',
    'tl_len', 'out', 'unsv')
  if f[1] ~= 'queued' then
    redis.call('ZREM', KEYS[1], id)
    dropped = dropped + 1
  elseif f[9] then -- held until a worker serves its version (lib/hold_unserved.lua)
  elseif not (f[2] and redis.call('ZSCORE', K.ready(prefix, f[2], f[3] or '0'), id)) then
    repaired = repaired + 1
    if f[2] and f[4] and f[6] and (not f[7] or tonumber(f[7])) then
      make_ready(prefix, rk, id, f[4], f[2], f[3], f[5], 'queued', now, 'requeued',
        {reason = 'not in its ready set'})
    else
      local err = {type = 'RunDataError', traceback = '',
        message = 'run record is damaged: job, queue or payload missing'}
      finish_run(prefix, rk, id, f[4] or '?', 'queued', 'failed', now, tonumber(ARGV[4]),
        {error = cjson.encode(err)}, {error = err.message},
        {tl_len = tonumber(f[7]) or 0, out = f[8]})
      dropped = dropped + 1
    end
  end
end
local nxt = start + #ids - dropped
if #ids < limit then nxt = 0 end
return {#ids, repaired, nxt}
