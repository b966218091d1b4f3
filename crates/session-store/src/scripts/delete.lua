-- Deletes a session and its index entry (same slot).
-- KEYS[1] session key   KEYS[2] index of the slot's principal   ARGV[1] handle
-- KEYS[2] is left out while the slot migrates, for sessions without a principal (store/lua.rs).
-- Returns 1 if the session existed, 0 otherwise; -6 when called without the index for a
-- session that has a principal (call again with it).
local blob = redis.call('GET', KEYS[1])
if not blob then
  -- Expired: its entry may linger until a listing prunes it; remove it now.
  if KEYS[2] then redis.call('ZREM', KEYS[2], ARGV[1]) end
  return 0
end
local live = string.byte(blob, 1) == 1
if live and struct.unpack('>I4', blob, 42) > 0 and not KEYS[2] then return -6 end
redis.call('DEL', KEYS[1])
-- A forwarding record (format 2) is the trace of a session that moved: not a live session.
if not live then return 0 end
if struct.unpack('>I4', blob, 42) > 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
