-- make_ready: the one way a run becomes ready to execute. The run joins its group's ready
-- set (scored by priority, then arrival: higher priority first, FIFO within one), the group
-- joins the queue's ring (round robin between groups), a ticket wakes a worker, and the run
-- is marked queued with the timeline entry `entry`. group nil = the default group '0',
-- prio nil = 0 (-100..100). Called by wake, reclaim, retry and resume; create_run calls
-- its queue part (enqueue) and writes status and timeline in its own HSET.
-- Queue counters (K.qstat, read by metrics): `ready` counts ready-set entries (+1 here,
-- -n on take, -1 in unready); `scheduled` / `waiting` count runs in that status (+1 where
-- a run enters it, -1 here when it leaves it for queued, or in cancel).
-- @include timeline.lua
-- @include set_status.lua
-- @include enqueue.lua
local function make_ready(prefix, rk, id, job, queue, group, prio, old, now, entry, extra)
  enqueue(prefix, id, queue, group, prio, old)
  timeline(rk, now, entry, extra)
  set_status(prefix, rk, id, job, old, 'queued', now, 0)
end
