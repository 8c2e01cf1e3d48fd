-- list_runs: the run ids of one page of list_runs (read only), in one atomic read, so that a
-- run moving between two of the requested statuses meanwhile is seen exactly once.
-- A status but running is read from its id-ordered index (ZREVRANGEBYLEX: the ids below
-- `high`, from `low` on, newest first, at most n); running runs from the leases of every
-- queue runs were leased from (K.leased_queues; running runs have no index of their own),
-- those of `job` only when one is given (one HGET per leased run), the newest n kept.
-- KEYS[i]  keys.ord_status(status_i) or keys.ord_job_status(job, status_i); for running
--          keys.leased_queues()
-- ARGV[1] prefix  ARGV[2] job ('': any)  ARGV[3] high ('+' or '(' .. id)
-- ARGV[4] low ('-' or '[' .. id)  ARGV[5] n  ARGV[5+i] status_i
-- Returns {id, status, ...}, at most n per status, unordered.
-- Cost: O(n) per status, and O(running runs) when running is asked for (bounded by the
-- workers' concurrency: the leases).
-- @include keys.lua
local prefix, job, high, low, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local below = high ~= '+' and string.sub(high, 2) or nil
local from = low ~= '-' and string.sub(low, 2) or nil
local out = {}
local i = 1
while ARGV[5 + i] do
  local status = ARGV[5 + i]
  if status == 'running' then
    local ids = {}
    for _, q in ipairs(redis.call('SMEMBERS', KEYS[i])) do
      for _, id in ipairs(redis.call('ZRANGE', K.leases(prefix, q), 0, -1)) do
        if (not below or id < below) and (not from or id >= from) and (job == '' or
            redis.call('HGET', K.run(prefix, id), 'job') == job) then
          ids[#ids + 1] = id
        end
      end
    end
    table.sort(ids, function(a, b) return a > b end)
    for j = 1, math.min(n, #ids) do
      out[#out + 1] = ids[j]
      out[#out + 1] = status
    end
  else
    for _, id in ipairs(redis.call('ZREVRANGEBYLEX', KEYS[i], high, low, 'LIMIT', 0, n)) do
      out[#out + 1] = id
      out[#out + 1] = status
    end
  end
  i = i + 1
end
return out
