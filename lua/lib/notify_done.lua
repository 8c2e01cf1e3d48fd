-- notify_done: tell result() waiters a run finished, only when one is waiting (field w).
local function notify_done(done_key, rk, id)
  if redis.call('HEXISTS', rk, 'w') == 1 then
    redis.call('XADD', done_key, 'MAXLEN', '~', '10000', '*', 'r', id)
  end
end
