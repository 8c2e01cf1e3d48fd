-- lua_run_id: a run id made inside a script, in the format of records.new_run_id():
-- 11 hex digits of ms, then 13 of a namespace sequence (K.seq).
-- @include keys.lua
local function lua_run_id(prefix, now)
  local seq = redis.call('INCR', K.seq(prefix))
  return string.format('%011x%013x', now, seq)
end
