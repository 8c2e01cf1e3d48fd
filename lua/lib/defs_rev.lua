-- defs_rev: the definitions check of a script that creates runs: the caller resolved the
-- runs' rules from the published definitions at revision `rev` (keys.defs() field '#rev',
-- '0' when none is published; '' skips the check: a low-level caller without rules). Returns nil when that is still the revision, else an error
-- reply 'STALE <rev>' (nothing written yet: the caller reloads and sends again).
-- Cost: one HGET.
-- @include keys.lua
local function defs_rev(prefix, rev)
  if rev == '' then return nil end
  local now_rev = redis.call('HGET', K.defs(prefix), '#rev') or '0'
  if now_rev == rev then return nil end
  return redis.error_reply('STALE ' .. now_rev)
end
