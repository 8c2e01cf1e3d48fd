-- drop_consumer: delete a consumer from the group only if nothing is pending for it, atomically
-- (XGROUP DELCONSUMER would otherwise drop entries delivered to it in between).
-- KEYS[1] stream  keys.stream(queue)  STREAM
-- ARGV[1] group  ARGV[2] consumer name
-- Returns 1 when deleted, 0 when it still has pending entries (or does not exist).
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
local ok = redis.pcall('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
if type(ok) == 'table' and ok.err then return 0 end
return 1
