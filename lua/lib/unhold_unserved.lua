-- unhold_unserved: a run held by hold_unserved leaves the hold (released or cancelled):
-- its `unsv` mark goes and its queue's counter `unserved` counts it no more.
-- @include keys.lua
local function unhold_unserved(prefix, rk, queue)
  redis.call('HDEL', rk, 'unsv')
  redis.call('HINCRBY', K.queue_stat(prefix, queue), 'unserved', -1)
end
