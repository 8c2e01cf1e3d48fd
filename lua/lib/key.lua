-- key: render a namespace key as keys.py does: prefix .. parts joined by ':'.
local function key(prefix, ...)
  return prefix .. table.concat({...}, ':')
end
