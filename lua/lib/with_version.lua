-- with_version: run fields `fields` (read only) with the version field `ver` added when the
-- version is not 1 (a run without `ver` is pinned to version 1: no field, no migration).
local function with_version(fields, ver)
  if ver == 1 then return fields end
  local f = {}
  for k, v in pairs(fields) do f[k] = v end
  f['ver'] = ver
  return f
end
