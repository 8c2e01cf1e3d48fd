-- resumed: 1 when `e`, the run's last timeline entry (JSON text, or nil), is its
-- 'resumed' entry (the run waited and is continued by the attempt taken after it), else 0;
-- then the entry's JSON text ('' if none), for ready_wait().
local function resumed(e)
  e = e or ''
  if string.find(e, '"type":"resumed"', 1, true) then return 1, e end
  return 0, e
end
