-- Revokes one session of a principal by its handle (same slot as the principal's index).
-- KEYS[1] the principal's index   KEYS[2] the session's key
-- ARGV[1] handle   ARGV[2] principal
-- Returns 1 if a live session of that principal was revoked, 0 otherwise (NOT_FOUND).
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local blob = redis.call('GET', KEYS[2])
if blob and string.byte(blob, 1) == 1 then
  local plen, pos = struct.unpack('>I4', blob, 42)
  if string.sub(blob, pos, pos + plen - 1) ~= ARGV[2] then return 0 end
end
redis.call('ZREM', KEYS[1], ARGV[1])
if not blob or string.byte(blob, 1) ~= 1 then return 0 end
redis.call('DEL', KEYS[2])
return 1
