-- follow: a reader begins to follow a run's output. An unfinished run is marked (its `out`
-- field) so that its finish ends the output stream with an {e = status} entry: readers
-- learn of the end at once, also when the run published nothing.
-- KEYS[1] run  keys.run(run_id)  HASH
-- Returns the run's status, or nil when there is no such run.
local s = redis.call('HMGET', KEYS[1], 'status', 'out')
if not s[1] then return nil end
if not s[2] and s[1] ~= 'completed' and s[1] ~= 'failed' and s[1] ~= 'cancelled' then
  redis.call('HSET', KEYS[1], 'out', '0-0')
end
return s[1]
