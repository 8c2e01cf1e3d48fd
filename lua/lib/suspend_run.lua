-- suspend_run: end a running attempt by parking the run as waiting for its pending waits
-- `steps` (kinds: their kinds); no worker slot is held. due: the earliest timer ms, 0 =
-- none (one entry of the queue's delayed set per run).
-- @include keys.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include release_lease.lua
local function suspend_run(prefix, rk, id, job, queue, now, due, steps, kinds)
  release_lease(prefix, queue, id)
  redis.call('HSET', rk, 'deliveries', 0) -- the token stays: a re-sent call sees it parked
  local extra = {step = steps[1], kind = kinds[1]}
  if #steps > 1 then
    extra['steps'], extra['kinds'] = {}, {}
    for i = 1, math.min(#steps, 50) do
      extra['steps'][i], extra['kinds'][i] = steps[i], kinds[i]
    end
    extra['count'] = #steps
  end
  if due > 0 then
    redis.call('ZADD', K.delayed(prefix, queue), due, id)
    extra['until'] = due
  end
  redis.call('HINCRBY', K.queue_stat(prefix, queue), 'waiting', 1)
  timeline(rk, now, 'waiting', extra)
  set_status(prefix, rk, id, job, 'running', 'waiting', now, 0)
end
