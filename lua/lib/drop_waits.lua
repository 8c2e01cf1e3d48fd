-- drop_waits: remove every pending wait of a run (it finished, or was cancelled); returns
-- the ids of the child runs those waits were for.
-- @include pending_waits.lua
-- @include unregister_wait.lua
local function drop_waits(prefix, rk, id)
  local children = {}
  for _, p in ipairs(pending_waits(rk)) do
    if p[2].c then children[#children + 1] = p[2].c end
    unregister_wait(prefix, rk, id, p[1], p[2])
  end
  return children
end
