-- enqueue: a run joins its group's ready set (scored by priority, then arrival: higher
-- priority first, FIFO within one), the group joins the queue's ring (round robin between
-- groups) and a ticket wakes a worker. The queue part of make_ready (which see), without
-- the run's own status and timeline (create_run writes those in its one HSET).
-- group nil = the default group '0', prio nil = 0 (-100..100).
-- @include keys.lua
-- @include ticket.lua
local function enqueue(prefix, id, queue, group, prio, old)
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
end
