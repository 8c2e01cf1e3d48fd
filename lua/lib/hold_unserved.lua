-- hold_unserved: a run handed back because no live worker registers its job version waits
-- queued in K.unserved(job, version) (outside every ready set, so no worker takes it again
-- and again), marked `unsv` = version and counted in its queue's counter `unserved` (the
-- queue views); register.lua releases it (release_unserved) when a worker with that version
-- beats, and cancel_run ends it. reconcile.lua leaves runs marked `unsv` alone.
-- @include keys.lua
-- @include timeline.lua
-- @include set_status.lua
local function hold_unserved(prefix, rk, id, job, ver, now, queue)
  redis.call('ZADD', K.unserved(prefix, job, ver), 'NX', now, id)
  redis.call('HSET', rk, 'unsv', ver)
  redis.call('HINCRBY', K.queue_stat(prefix, queue), 'unserved', 1)
  timeline(rk, now, 'unserved', {version = tonumber(ver)})
  set_status(prefix, rk, id, job, 'running', 'queued', now, 0)
end
