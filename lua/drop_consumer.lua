-- drop_consumer: delete a gone worker's consumer from the queue's group. Every read is
-- XREADGROUP ... NOACK (tickets only wake workers), so a consumer never holds pending
-- entries: deleting it loses nothing.
-- KEYS[1] stream  keys.stream(queue)  STREAM
-- ARGV[1] group  ARGV[2] consumer name
-- Returns 1 when deleted, 0 when there was no such stream, group or consumer.
local ok = redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
if type(ok) == 'table' and ok.err then return 0 end
return 1
