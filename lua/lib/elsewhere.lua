-- elsewhere: whether run `id` lives on another partition than the script's keys (prefix
-- `ss:{ns/p.salt}:`; ids of a partitioned namespace end in `-<p>`, partitions.py). Always
-- false with one partition (neither carries a number). A script reaches such a run only
-- through its partition's outbox (K.outbox, applied by lua/apply_outbox.lua).
local function elsewhere(prefix, id)
  return string.match(id, '%-(%d+)$') ~= string.match(prefix, '/(%d+)%.%d+}:$')
end
