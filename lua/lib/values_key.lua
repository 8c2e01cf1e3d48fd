-- values_key: the waiter-set suffix for a match shape ('a,b.c') given an event's flattened
-- data (path -> canonical JSON); false when a path is missing. Same as events.values_key().
local function values_key(shape, flat)
  local parts = {}
  for path in string.gmatch(shape, '[^,]+') do
    local v = flat[path]
    if v == nil then return false end
    parts[#parts + 1] = v
  end
  return redis.sha1hex(table.concat(parts, '\31'))
end
