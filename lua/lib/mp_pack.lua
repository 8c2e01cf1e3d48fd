-- mp_pack: encode a Lua string as msgpack str (as_bin false) or bin (as_bin true).
local function mp_pack(s, as_bin)
  local n = #s
  local c8, c16, c32 = 0xd9, 0xda, 0xdb
  if as_bin then
    c8, c16, c32 = 0xc4, 0xc5, 0xc6
  elseif n < 32 then
    return string.char(0xa0 + n) .. s
  end
  if n < 256 then return string.char(c8, n) .. s end
  if n < 65536 then return string.char(c16, math.floor(n / 256), n % 256) .. s end
  return string.char(c32, math.floor(n / 16777216), math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256) .. s
end
