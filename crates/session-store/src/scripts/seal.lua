-- First step of moving a session to another slot (login: it gains a principal, whose tag is its
-- new slot). Replaces the session by a forwarding record, so the old id is unusable from this
-- instant (Get, Put, Touch see no session), and returns the session to be written at its new id.
-- Retrying the move finds the record and completes it with the same new id.
-- Record (format 2): u8 2 | u32 len | new id | u32 len | principal | the session blob (format 1)
-- KEYS[1] old key   KEYS[2] index of the old slot's principal
-- ARGV[1] now (ms)   ARGV[2] expected version or ''   ARGV[3] old handle   ARGV[4] new id
-- ARGV[5] the principal the session moves to
-- Returns {1, blob} | {2, new id, principal, blob} moved before | {0} | {-1, current_version}
local blob = redis.call('GET', KEYS[1])
if not blob then return {0} end
local format = string.byte(blob, 1)
if format == 2 then
  local n, pos = struct.unpack('>I4', blob, 2)
  local id = string.sub(blob, pos, pos + n - 1)
  local m
  m, pos = struct.unpack('>I4', blob, pos + n)
  return {2, id, string.sub(blob, pos, pos + m - 1), string.sub(blob, pos + m)}
end
if format ~= 1 then return {0} end
local version, _, last, idle, abs = struct.unpack('>I8I8I8I8I8', blob, 2)
local now = tonumber(ARGV[1])
local expires = last + idle
if abs > 0 and abs < expires then expires = abs end
if expires <= now then return {0} end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= version then return {-1, version} end
local record = string.char(2) .. struct.pack('>I4', #ARGV[4]) .. ARGV[4]
  .. struct.pack('>I4', #ARGV[5]) .. ARGV[5] .. blob
redis.call('SET', KEYS[1], record, 'KEEPTTL')
redis.call('ZREM', KEYS[2], ARGV[3])
return {1, blob}
