-- pause_queue: pause a queue: take.lua gives none of its runs until resume_queue. The queue
-- still accepts runs, delayed runs still become ready (and wait), running runs finish.
-- Its wake-up tickets are dropped (resume_queue adds fresh ones).
-- KEYS[1] conf    keys.queue_conf(queue)  HASH field paused = ms when paused
-- KEYS[2] stream  keys.stream(queue)      STREAM wake-up tickets
-- Returns 1 when this call paused the queue, 0 when it was paused already.
-- @include now_ms.lua
if redis.call('HSETNX', KEYS[1], 'paused', now_ms()) == 0 then return 0 end
redis.call('XTRIM', KEYS[2], 'MAXLEN', 0)
return 1
