-- lua_run_id: a run id made inside a script, in the format of records.new_run_id():
-- 11 hex digits of ms, then 13 of a namespace sequence (K.seq), then `-<p>` when the
-- prefix is a partition's (`ss:{ns/p.salt}:`, partitions.py): the id names its partition.
-- @include keys.lua
local function lua_run_id(prefix, now)
  local seq = redis.call('INCR', K.seq(prefix))
  local part = string.match(prefix, '/(%d+)%.%d+}:$')
  if part then return string.format('%011x%013x-%s', now, seq, part) end
  return string.format('%011x%013x', now, seq)
end
