-- Creates a session of a principal and indexes it, enforcing the principal's session limit, all
-- in the slot of the principal's tag (layout: codec.rs, docs/key-layout.md).
-- KEYS[1] session key   KEYS[2] the principal's index (sorted set of handles by last activity)
-- ARGV[1] blob   ARGV[2] expiry (ms)   ARGV[3] handle   ARGV[4] now (ms)
-- ARGV[5] session limit (0 = none)   ARGV[6] 'revoke' (oldest) or 'reject' at the limit
-- ARGV[7] key prefix of the slot's sessions (a handle's key is ARGV[7] .. handle)
-- Returns {1, revoked, {revoked handles}} | {0} the key exists | {-4, live} at the limit and 'reject'
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
local revoked = 0
local gone = {}
local max = tonumber(ARGV[5])
if max > 0 then
  local live = redis.call('ZCARD', KEYS[2])
  if live >= max then
    -- Sessions that expired or were deleted leave the index first: no sweep needed elsewhere.
    for _, handle in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      if redis.call('EXISTS', ARGV[7] .. handle) == 0 then redis.call('ZREM', KEYS[2], handle) end
    end
    live = redis.call('ZCARD', KEYS[2])
  end
  while live >= max do
    if ARGV[6] == 'reject' then return {-4, live} end
    local oldest = redis.call('ZPOPMIN', KEYS[2])
    revoked = revoked + redis.call('DEL', ARGV[7] .. oldest[1])
    gone[#gone + 1] = oldest[1]
    live = live - 1
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
-- The index lives as long as its longest-lived session, so an abandoned one goes by itself.
if redis.call('PEXPIRETIME', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIREAT', KEYS[2], ARGV[2])
end
return {1, revoked, gone}
