-- Deletes a session only if nobody wrote to it since it was read at version ARGV[1]: the last
-- step of Rotate, which must not drop a write that raced it (layout: src/store/codec.rs).
-- KEYS[1] session key   ARGV[1] version the caller read
-- Returns {1} deleted | {0} not found | {-1, current_version} changed since
local blob = redis.call('GET', KEYS[1])
if not blob then return {0} end
if string.byte(blob, 1) ~= 1 then return redis.error_reply('ERR unknown session format') end
local version = struct.unpack('>I8', blob, 2)
if version ~= tonumber(ARGV[1]) then return {-1, version} end
redis.call('DEL', KEYS[1])
return {1}
