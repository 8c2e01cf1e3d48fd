-- transact: commit a transactional step (ctx.step.transact) once, atomically: fenced by the
-- lease; every key the step read must still hold what it read (else nothing is written);
-- then its state writes, its events (as send_event), its starts (as start) and the step's
-- record. The commit token is kept in tx:<step>: a re-sent commit (its reply was lost)
-- finds the step recorded and applies nothing again.
-- KEYS[1] run  keys.run(id)  HASH the running run (s:<step>, tx:<step>, timeline)
-- then, counted by ARGV[7] ('nr nw ne ns'): nr keys read and nw keys written (each
-- keys.state(name), STRING), 6 keys per event (send_event's KEYS) and 2 per start (start's
-- run and idem keys)
-- ARGV[1] prefix  ARGV[2] run_id  ARGV[3] lease token  ARGV[4] step name  ARGV[5] record
-- ARGV[6] commit token  ARGV[7] counts  ARGV[8] retention_ms  ARGV[9] event dedupe ms
-- ARGV[10] event log ms  ARGV[11] summary JSON {set, deleted, events} (timeline entry)
-- then per read: '-' (absent) | '=' .. bytes; per write: op ('s' set, 'k' set keeping the
-- TTL, 'd' delete), bytes, ttl_ms (0: none); per event: name, id, bytes, flat JSON,
-- payload, local triggers JSON, hook fields JSON, plans JSON; per start: job, queue,
-- run id, has_idem '1'|'0', payload, plan JSON, delay_ms, at_ms, idem_ttl_ms, fields JSON,
-- version (0: the highest live one, lib/pick_version.lua).
-- Returns {'ok', cancel 0|1, {run id, deduplicated, skipped, ...} per start, per event
-- send_event's {duplicate, resumed, started, cancelled}} |
-- {'done', record} (recorded already: a re-sent commit) | {'conflict', i} (read i changed).
-- Remote commit (partitions: the state lives on another partition than the run): counts
-- has a 5th number, 1; KEYS[1] is then keys.tx_commit(run id) on the state's partition,
-- the lease is not checked (it is on the run's), the record and token go in that hash
-- (expiring after retention_ms), with the timeline summary (j:<step>, started runs
-- included), and an outbox entry 'tx_record' records the step on the run
-- (lua/apply_outbox.lua; the caller also applies it at once). The reply then has a 5th
-- and 6th element (the commit's ms, that summary); {'done', record, summary} when done.
-- Partitioned events (P>1): counts has a 6th number, 1 (the 5th is then 0 or 1); each event
-- has a 9th argument, JSON [[partition, triggers JSON, plans JSON], ...] of the other
-- partitions' legs. The event's 6 keys are this partition's and its leg is sent here
-- (emit_event with the leg flag: the triggers and plans given are this leg's, its KEYS
-- triggers key is not read); every other leg is an outbox entry 'event' naming its
-- partition (applied as send_event's leg there by the relay, and by the caller at once),
-- with call token <commit token>:<e>, so each leg has its effect once.
-- Starts on other partitions (P>1): counts has a 7th number nx (the 5th and 6th are then
-- 0 or 1) and, after the starts, nx more (no KEYS): job, queue, run id, has_idem, the
-- idempotency key ('' without), payload, plan JSON, delay_ms, at_ms, idem_ttl_ms, fields
-- JSON, version; each an outbox entry 'tx_start' (made: this call's ms), applied on the
-- run's partition by the relay (and by the caller at once); the reply then has a 5th
-- element, that ms. Their run ids are listed in the timeline entry as started.
-- Errors: LEASE_LOST.  Cost: O(keys + events' send cost + starts); one script call.
-- @include now_ms.lua
-- @include timeline.lua
-- @include check_lease.lua
-- @include emit_event.lua
-- @include start_once.lua
-- @include pick_version.lua
-- @include with_version.lua
-- @include keys.lua
local rk, prefix, step = KEYS[1], ARGV[1], ARGV[4]
local c = {}
for n in string.gmatch(ARGV[7], '%d+') do c[#c + 1] = tonumber(n) end
local nr, nw, ne, ns, remote, legs = c[1], c[2], c[3], c[4], c[5] == 1, c[6] == 1
local nx = c[7] or 0
local f, err = {}, nil
if not remote then
  f, err = check_lease(rk, ARGV[2], ARGV[3])
  if not f then return redis.error_reply(err) end
end
local done
if remote then -- (its timeline summary too)
  done = redis.call('HMGET', rk, 's:' .. step, 'tx:' .. step, 'j:' .. step)
  if done[2] then return {'done', done[1], done[3]} end
else
  done = redis.call('HMGET', rk, 's:' .. step, 'tx:' .. step)
  if done[2] then return {'done', done[1]} end -- (a failed attempt's record is replaced)
end
local a = 11
for i = 1, nr do
  local cur = redis.call('GET', KEYS[1 + i])
  local want = ARGV[a + i]
  if (cur and '=' .. cur or '-') ~= want then return {'conflict', i} end
end
a = a + nr
for j = 1, nw do
  local key, op, value, ttl = KEYS[1 + nr + j], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if op == 'd' then
    redis.call('DEL', key)
  elseif op == 'k' then
    redis.call('SET', key, value, 'KEEPTTL')
  elseif ttl ~= '0' then
    redis.call('SET', key, value, 'PX', ttl)
  else
    redis.call('SET', key, value)
  end
  a = a + 3
end
local kb = 1 + nr + nw
local keep = ARGV[8]
local sent = {}
for e = 1, ne do
  local ek = {KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3], KEYS[kb + 4], KEYS[kb + 5], KEYS[kb + 6]}
  local ea = {prefix, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5],
    ARGV[9], ARGV[10], ARGV[a + 6], ARGV[6] .. ':' .. e, ARGV[a + 7], keep, ARGV[a + 8]}
  if legs then -- this partition's leg here; every other one's through the outbox
    ea[14], ea[15] = '', '1'
    for _, leg in ipairs(cjson.decode(ARGV[a + 9])) do
      redis.call('XADD', K.outbox(prefix), '*', 'a', 'event', 'part', leg[1], 'name', ea[2],
        'id', ea[3], 'bytes', ea[4], 'flat', ea[5], 'payload', ea[6], 'triggers', leg[2],
        'plans', leg[3], 'fields', ea[11], 'token', ea[10], 'dedupe', ea[7], 'log', ea[8],
        'keep', keep)
    end
    a = a + 1
  end
  sent[e] = emit_event(ek, ea)
  kb, a = kb + 6, a + 8
end
local now = now_ms()
local out, started = {}, {}
for s = 1, ns do
  local extra = {}
  if ARGV[a + 10] ~= '' then extra = cjson.decode(ARGV[a + 10]) end
  extra = with_version(extra, pick_version(prefix, ARGV[a + 1], tonumber(ARGV[a + 11]), now))
  local due = now + tonumber(ARGV[a + 7])
  if tonumber(ARGV[a + 8]) > 0 then due = tonumber(ARGV[a + 8]) end
  local rid, dedup, skipped = start_once(prefix, ARGV[a + 1], ARGV[a + 2], KEYS[kb + 1],
    KEYS[kb + 2], ARGV[a + 3], ARGV[a + 4] == '1', ARGV[a + 5], ARGV[a + 6], extra, now, due,
    tonumber(keep), ARGV[a + 9])
  out[#out + 1] = rid
  out[#out + 1] = dedup
  out[#out + 1] = skipped
  if rid ~= '' then started[#started + 1] = rid end
  kb, a = kb + 2, a + 11
end
for _ = 1, nx do -- runs on other partitions: through the outbox
  redis.call('XADD', K.outbox(prefix), '*', 'a', 'tx_start', 'run', ARGV[a + 3],
    'job', ARGV[a + 1], 'queue', ARGV[a + 2], 'idem', ARGV[a + 4], 'key', ARGV[a + 5],
    'payload', ARGV[a + 6], 'plan', ARGV[a + 7], 'delay', ARGV[a + 8], 'at', ARGV[a + 9],
    'made', now, 'ttl', ARGV[a + 10], 'fields', ARGV[a + 11], 'ver', ARGV[a + 12])
  started[#started + 1] = ARGV[a + 3]
  a = a + 12
end
redis.call('HSET', rk, 's:' .. step, ARGV[5], 'tx:' .. step, ARGV[6])
local summary = cjson.decode(ARGV[11])
if #started > 0 then summary['started'] = started end
if remote then
  local js = cjson.encode(summary)
  redis.call('HSET', rk, 'j:' .. step, js)
  redis.call('PEXPIRE', rk, keep)
  redis.call('XADD', K.outbox(prefix), '*', 'a', 'tx_record', 'run', ARGV[2], 'step', step,
    'record', ARGV[5], 'token', ARGV[6], 'summary', js)
  return {'ok', 0, out, sent, now, js}
end
timeline(rk, now, 'step_completed', {step = step, tx = summary})
local cancel = 0
if f[10] then cancel = 1 end
if nx > 0 then return {'ok', cancel, out, sent, now} end
return {'ok', cancel, out, sent}
