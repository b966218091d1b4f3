-- Revokes up to ARGV[4] sessions of a principal, all but one if asked; called again while some
-- remain, so a principal with 10,000 sessions is never one giant script.
-- KEYS[1] the principal's index
-- ARGV[1] key prefix of the slot's sessions   ARGV[2] handle to keep or ''   ARGV[3] principal
-- ARGV[4] batch size
-- Returns {revoked, removed from the index, remaining, {revoked handles}}
local revoked, removed = 0, 0
local gone = {}
local kept = 0
if ARGV[2] ~= '' and redis.call('ZSCORE', KEYS[1], ARGV[2]) then kept = 1 end
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[4]) + kept - 1)
for _, handle in ipairs(members) do
  if handle ~= ARGV[2] then
    local key = ARGV[1] .. handle
    local blob = redis.call('GET', key)
    local theirs = false
    if blob and string.byte(blob, 1) == 1 then
      local plen, pos = struct.unpack('>I4', blob, 42)
      theirs = string.sub(blob, pos, pos + plen - 1) ~= ARGV[3]
    end
    if not theirs then
      removed = removed + redis.call('ZREM', KEYS[1], handle)
      if blob and string.byte(blob, 1) == 1 then
        redis.call('DEL', key)
        revoked = revoked + 1
        gone[#gone + 1] = handle
      end
    end
  end
end
return {revoked, removed, redis.call('ZCARD', KEYS[1]) - kept, gone}
