-- release: give back stream entries a stopping worker read but did not start.
-- KEYS[1] stream  keys.stream(queue)  STREAM
-- ARGV[1] group  ARGV[2i] entry_id_i  ARGV[2i+1] run_id_i
-- Returns the number of entries re-added (each gets a fresh entry at the stream's end).
local n, i = 0, 1
while ARGV[2 * i] do
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2 * i]) == 1 then
    redis.call('XDEL', KEYS[1], ARGV[2 * i])
    redis.call('XADD', KEYS[1], '*', 'r', ARGV[2 * i + 1])
    n = n + 1
  end
  i = i + 1
end
return n
