-- ready_wait: from the timeline entry make_ready wrote when the run was last made ready
-- (the entry just before its 'started' one): the ms it waited until `now` (server clock),
-- and what resumed it ('event', 'timer', 'child_ok', 'child_failed': the `by` of a
-- 'resumed' entry; '' otherwise). For the metrics of queue wait and event-to-resume latency.
local function ready_wait(entry, now)
  local at = tonumber(string.match(entry, '"at":(%d+)') or '') or now
  local by = ''
  if string.find(entry, '"type":"resumed"', 1, true) then
    by = string.match(entry, '"by":"([%w_]+)"') or ''
  end
  return math.max(now - at, 0), by
end
