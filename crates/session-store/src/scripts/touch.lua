-- Refreshes a session's expiry after a read (layout: codec.rs).
-- Never creates a key, so a deleted or expired session cannot come back, and never moves the
-- expiry past the absolute cap or backwards.
-- KEYS[1] session key   ARGV[1] now (ms)
-- KEYS[2] (sessions with a principal) its index, ARGV[2] the session's handle: the entry's
-- score is the session's last activity, so lists stay newest-first and the limit evicts the
-- least recently active.
-- Returns 1 if the expiry moved, 0 otherwise.
local header = redis.call('GETRANGE', KEYS[1], 0, 40)
if #header < 41 or string.byte(header, 1) ~= 1 then return 0 end
local _, _, last, idle, abs = struct.unpack('>I8I8I8I8I8', header, 2)
local now = tonumber(ARGV[1])
local old = last + idle
if abs > 0 and abs < old then old = abs end
if old <= now then return 0 end
local new = now + idle
if abs > 0 and abs < new then new = abs end
if new <= old then return 0 end
redis.call('SETRANGE', KEYS[1], 17, struct.pack('>I8', now))
redis.call('PEXPIREAT', KEYS[1], new)
if KEYS[2] and redis.call('ZADD', KEYS[2], 'XX', 'CH', now, ARGV[2]) == 1
    and redis.call('PEXPIRETIME', KEYS[2]) < new then
  redis.call('PEXPIREAT', KEYS[2], new)
end
return 1
