-- Moves a session to a new id in the same slot, atomically: the new key is written, the old one
-- deleted and the index entry renamed in one step (layout: codec.rs).
-- KEYS[1] old key   KEYS[2] new key   KEYS[3] index of the slot's principal
-- ARGV[1] now (ms)   ARGV[2] expected version or ''   ARGV[3] old handle   ARGV[4] new handle
-- ARGV[5] '' to keep the principal, or '=' followed by the principal (of this slot's tag, or '')
-- Returns {1, new_blob} | {0} not found or expired | {-1, current_version} | {-5} new key taken
local blob = redis.call('GET', KEYS[1])
if not blob or string.byte(blob, 1) ~= 1 then return {0} end
local version, created, last, idle, abs = struct.unpack('>I8I8I8I8I8', blob, 2)
local now = tonumber(ARGV[1])
local expires = last + idle
if abs > 0 and abs < expires then expires = abs end
if expires <= now then return {0} end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= version then return {-1, version} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-5} end
expires = now + idle
if abs > 0 and abs < expires then expires = abs end
local plen, rest = struct.unpack('>I4', blob, 42)
local principal = string.sub(blob, rest, rest + plen - 1)
if ARGV[5] ~= '' then principal = string.sub(ARGV[5], 2) end
local out = string.char(1) .. struct.pack('>I8I8I8I8I8I4', version + 1, created, now, idle, abs, #principal)
  .. principal .. string.sub(blob, rest + plen)
redis.call('SET', KEYS[2], out, 'PXAT', expires)
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[3])
if principal ~= '' then
  redis.call('ZADD', KEYS[3], now, ARGV[4])
  if redis.call('PEXPIRETIME', KEYS[3]) < expires then redis.call('PEXPIREAT', KEYS[3], expires) end
end
return {1, out}
