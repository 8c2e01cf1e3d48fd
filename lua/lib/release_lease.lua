-- release_lease: end a claim (completed, failed, suspended, recovered): drop the run's lease
-- and its Concurrency slot places (free_slots), and, when a take stopped at the queue's
-- concurrency limit, wake a worker for the slot. pre: check_lease() fields, or nil.
-- @include keys.lua
-- @include ticket.lua
-- @include free_slots.lua
local function release_lease(prefix, queue, id, pre)
  redis.call('ZREM', K.leases(prefix, queue), id)
  free_slots(prefix, id, pre)
  if redis.call('HDEL', K.queue_stat(prefix, queue), 'starved') == 1 then
    ticket(prefix, queue)
  end
end
