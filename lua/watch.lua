-- watch: mark a run as awaited (finishing it then notifies keys.done()) and read its outcome.
-- KEYS[1] run  keys.run(run_id)  HASH
-- Returns {status, result, error} or 0 when there is no such run.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'awaited', 1)
return redis.call('HMGET', KEYS[1], 'status', 'result', 'error')
