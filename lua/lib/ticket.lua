-- ticket: add a wake-up ticket to a queue's stream: one worker blocked on the queue
-- (XREADGROUP through the consumer group) wakes and takes. Tickets name no run, so the
-- stream is trimmed freely.
-- @include keys.lua
local function ticket(prefix, queue)
  redis.call('XADD', K.stream(prefix, queue), 'MAXLEN', '~', 1000, '*', 't', '1')
end
