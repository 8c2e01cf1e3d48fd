-- out_id: the id of the next entry of a run's output stream, from the run's `out` field
-- (the stream's last id, then a space and the last publish call) and the time: `<now>-0`,
-- or the last id's next sequence number while the clock has not passed it (ids only grow).
local function out_id(out, now)
  local ms, seq = string.match(out or '', '^(%d+)-(%d+)')
  ms = tonumber(ms) or 0
  if now > ms then return string.format('%d-0', now) end
  return string.format('%d-%d', ms, tonumber(seq) + 1)
end
