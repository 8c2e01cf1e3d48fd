-- done_by: true when the run already finished under this lease token: a finish call
-- re-sent by the client after its reply was lost (the run keeps its last token).
local function done_by(f, token)
  local s = f[1]
  return (s == 'completed' or s == 'failed' or s == 'cancelled') and f[4] == token
end
