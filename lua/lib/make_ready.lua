-- make_ready: the one way a run becomes ready to execute. The run joins its group's ready
-- set (scored by priority, then arrival: higher priority first, FIFO within one), the group
-- joins the queue's ring (round robin between groups), a ticket wakes a worker, and the run
-- is marked queued with the timeline entry `entry`. group nil = the default group '0',
-- prio nil = 0 (-100..100). Called by create_run, wake, reclaim and retry.
-- Queue counters (K.qstat, read by metrics): `ready` counts ready-set entries (+1 here,
-- -n on take, -1 in unready); `scheduled` / `waiting` count runs in that status (+1 where
-- a run enters it, -1 here when it leaves it for queued, or in cancel).
-- @include keys.lua
-- @include timeline.lua
-- @include set_status.lua
-- @include ticket.lua
local function make_ready(prefix, rk, id, job, queue, group, prio, old, now, entry, extra)
  group = group or '0'
  local stat = K.queue_stat(prefix, queue)
  local seq = redis.call('HINCRBY', stat, 'seq', 1)
  local p = math.max(-100, math.min(100, tonumber(prio) or 0))
  local score = (100 - p) * 1099511627776 + seq
  if redis.call('ZADD', K.ready(prefix, queue, group), score, id) == 1 then
    redis.call('HINCRBY', stat, 'ready', 1)
  end
  if old == 'scheduled' or old == 'waiting' then redis.call('HINCRBY', stat, old, -1) end
  redis.call('ZADD', K.ring(prefix, queue), 'NX', seq, group)
  ticket(prefix, queue)
  timeline(rk, now, entry, extra)
  set_status(prefix, rk, id, job, old, 'queued', now, 0)
end
