-- replay: start a new run of a run's job with its payload (and trigger event, group,
-- priority, concurrency slots and version: its copied steps come from that version's
-- code), linked both ways: the new run's `replay_of` field and timeline entry
-- 'replay_of', the original's timeline entry 'replayed'. With a from_step, the completed
-- step records the original made before that step are copied (execution order: where the
-- original's timeline first names each step), so that step and later ones run again; each
-- copied record gets a 'step_copied' timeline entry, in that order.
-- KEYS[1] run  keys.run(run_id)  HASH the run to replay
-- KEYS[2] new  keys.run(new_id)  HASH the new run
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] new_id  ARGV[4] from_step ('': none)
-- ARGV[5] extra fields of the new run (JSON object, may be '')
-- Returns {new_id, copied step records}; a repeated call returns {new_id, -1}.
-- Errors: NOT_FOUND no such run; INVALID the run has no step named from_step.
-- Cost: O(fields of the original run): one HGETALL.
-- @include keys.lua
-- @include now_ms.lua
-- @include timeline.lua
-- @include create_run.lua
local prefix, id, new_id, from = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', KEYS[2]) == 1 then return {new_id, -1} end
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return redis.error_reply('NOT_FOUND no run ' .. id) end
local v = {}
for j = 1, #h, 2 do v[h[j]] = h[j + 1] end
local copy = {}
local order = {} -- step name -> index of the first timeline entry naming it
if from ~= '' then
  for n = 1, tonumber(v['tl_len'] or '0') do
    local raw = v['t:' .. n]
    if raw then
      local e = cjson.decode(raw)
      if type(e.step) == 'string' and not order[e.step] then order[e.step] = n end
    end
  end
  local pos = order[from]
  if not pos then
    return redis.error_reply('INVALID from_step: run ' .. id .. ' has no step ' .. from)
  end
  for field, rec in pairs(v) do
    local name = string.sub(field, 3)
    -- a record is msgpack {status, at, result | error}: copy completed ones only
    if string.sub(field, 1, 2) == 's:' and order[name] and order[name] < pos
        and string.find(rec, '\166status\169completed', 1, true) then
      copy[#copy + 1] = field
    end
  end
end
local now = now_ms()
local fields = {}
if ARGV[5] ~= '' then fields = cjson.decode(ARGV[5]) end
for _, f in ipairs({'event', 'group', 'priority', 'slots', 'thr', 'ver'}) do fields[f] = v[f] end
fields['replay_of'] = id
local step = nil
if from ~= '' then step = from end
-- copied records in the original's order, each with a timeline entry (runs show, the page)
table.sort(copy, function(a, b) return order[string.sub(a, 3)] < order[string.sub(b, 3)] end)
local first = {{type = 'replay_of', at = now, run = id, from_step = step}}
for _, field in ipairs(copy) do
  redis.call('HSET', KEYS[2], field, v[field])
  first[#first + 1] = {type = 'step_copied', at = now, step = string.sub(field, 3)}
end
create_run(prefix, new_id, v['job'], v['queue'], v['payload'], now, now, fields, first)
timeline(KEYS[1], now, 'replayed', {run = new_id, from_step = step})
return {new_id, #copy}
