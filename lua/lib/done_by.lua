-- done_by: true when the run already finished (or was scheduled for a retry) under this
-- lease token: a finish call re-sent by the client after its reply was lost (the run keeps
-- its last token). f = HMGET status, job, queue, token.
local function done_by(f, token)
  local s = f[1]
  local ended = s == 'completed' or s == 'failed' or s == 'cancelled' or s == 'scheduled'
  return ended and f[4] == token
end
