-- mirror_defs: with partitions (P > 1), copy the namespace's published definitions
-- (keys.defs() on the namespace tag) into one partition's copy, which the scripts creating
-- runs there read (lib/defs_rev.lua, lib/pick_version.lua, lib/start_on_failure.lua).
-- Only a newer revision replaces the copy: a late copy never rolls it back.
-- KEYS[1] defs  the partition's keys.defs()
-- ARGV[1] the revision copied  ARGV[2] JSON [field, value, ...]: the namespace's defs
-- Returns the copy's revision after the call.
-- Cost: O(fields) when the copy is replaced, else one HGET.
local have = tonumber(redis.call('HGET', KEYS[1], '#rev') or '0')
if have >= tonumber(ARGV[1]) then return tostring(have) end
redis.call('DEL', KEYS[1])
local flat = cjson.decode(ARGV[2])
for i = 1, #flat, 4000 do
  redis.call('HSET', KEYS[1], unpack(flat, i, math.min(i + 3999, #flat)))
end
return ARGV[1]
