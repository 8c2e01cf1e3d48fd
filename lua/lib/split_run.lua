-- split_run: a run's HGETALL reply split into plain fields, step records (flat name,
-- record pairs), hook fields (flat x:<name> pairs), the steps of its pending waits and its
-- timeline entries (t:<n> -> JSON text; an absent t:1 is the implied {queued at created}).
local function split_run(h)
  local v, steps, hooked, waits, tl = {}, {}, {}, {}, {}
  for j = 1, #h, 2 do
    local pre = string.sub(h[j], 1, 2)
    if pre == 's:' then
      steps[#steps + 1] = string.sub(h[j], 3)
      steps[#steps + 1] = h[j + 1]
    elseif pre == 'x:' then
      hooked[#hooked + 1] = string.sub(h[j], 3)
      hooked[#hooked + 1] = h[j + 1]
    elseif pre == 'w:' then
      waits[#waits + 1] = string.sub(h[j], 3)
    elseif pre == 't:' then
      tl[h[j]] = h[j + 1]
    else
      v[h[j]] = h[j + 1]
    end
  end
  if not tl['t:1'] and v['created'] then
    tl['t:1'] = '{"type":"queued","at":' .. v['created'] .. '}'
  end
  return v, steps, hooked, waits, tl
end
