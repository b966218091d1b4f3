-- Undoes seal.lua when the move cannot complete (the new principal is at its session limit and
-- refuses more): the session returns under its old id, with its old index entry.
-- KEYS[1] old key   KEYS[2] index of the old slot's principal
-- ARGV[1] the new id the record names   ARGV[2] old handle   ARGV[3] now (ms)
-- Returns 1 if restored.
local record = redis.call('GET', KEYS[1])
if not record or string.byte(record, 1) ~= 2 then return 0 end
local n, pos = struct.unpack('>I4', record, 2)
if string.sub(record, pos, pos + n - 1) ~= ARGV[1] then return 0 end
local m
m, pos = struct.unpack('>I4', record, pos + n)
local blob = string.sub(record, pos + m)
redis.call('SET', KEYS[1], blob, 'KEEPTTL')
local plen = struct.unpack('>I4', blob, 42)
if plen > 0 then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2]) end
return 1
