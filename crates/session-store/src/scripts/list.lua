-- One page of a principal's sessions, newest activity first (layout: codec.rs).
-- Entries whose session expired, was deleted or moved are removed from the index on the way.
-- KEYS[1] the principal's index
-- ARGV[1] key prefix of the slot's sessions   ARGV[2] page size   ARGV[3] cursor score or ''
-- ARGV[4] cursor handle   ARGV[5] principal   ARGV[6..] display attribute names
-- Returns {next_score or '', next_handle or '', entries}, an entry being
-- {handle, version, created, last, idle, absolute, {name, value, ...}, score}
local want = tonumber(ARGV[2])
local budget = want * 10 + 100
local wanted = {}
for i = 6, #ARGV do wanted[ARGV[i]] = true end
local cursor_score, cursor_handle = ARGV[3], ARGV[4]

-- The next members after the cursor, in (score desc, handle desc) order.
local function batch()
  local out = {}
  if cursor_score == '' then
    return redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, want + 1, 'WITHSCORES')
  end
  local same = redis.call('ZRANGE', KEYS[1], cursor_score, cursor_score, 'BYSCORE', 'REV', 'WITHSCORES')
  for i = 1, #same, 2 do
    if same[i] < cursor_handle then
      out[#out + 1] = same[i]
      out[#out + 1] = same[i + 1]
    end
  end
  local lower = redis.call('ZRANGE', KEYS[1], '(' .. cursor_score, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, want + 1, 'WITHSCORES')
  for i = 1, #lower do out[#out + 1] = lower[i] end
  return out
end

local entries, scanned = {}, 0
local last_score, last_handle = '', ''
local more = false
while true do
  local members = batch()
  if #members == 0 then break end
  for i = 1, #members, 2 do
    local handle, score = members[i], members[i + 1]
    cursor_score, cursor_handle = score, handle
    scanned = scanned + 1
    local blob = redis.call('GET', ARGV[1] .. handle)
    if not blob or string.byte(blob, 1) ~= 1 then
      redis.call('ZREM', KEYS[1], handle)
    else
      local version, created, last, idle, abs, plen, pos = struct.unpack('>I8I8I8I8I8I4', blob, 2)
      -- Another principal with the same 64-bit tag shares the index: theirs are skipped.
      if string.sub(blob, pos, pos + plen - 1) == ARGV[5] then
        if #entries == want then
          more = true
          break
        end
        pos = pos + plen
        local attrs = {}
        if next(wanted) then
          local count
          count, pos = struct.unpack('>I4', blob, pos)
          for _ = 1, count do
            local len, name, value
            len, pos = struct.unpack('>I4', blob, pos)
            name = string.sub(blob, pos, pos + len - 1)
            pos = pos + len
            len, pos = struct.unpack('>I4', blob, pos)
            if wanted[name] then
              value = string.sub(blob, pos, pos + math.min(len, 1024) - 1)
              attrs[#attrs + 1] = name
              attrs[#attrs + 1] = value
            end
            pos = pos + len
          end
        end
        entries[#entries + 1] = {handle, version, created, last, idle, abs, attrs, score}
        last_score, last_handle = score, handle
      end
    end
  end
  if more then break end
  if scanned >= budget then
    -- A long run of dead entries: stop here, the next page continues from this point.
    more = true
    last_score, last_handle = cursor_score, cursor_handle
    break
  end
end
if not more then return {'', '', entries} end
return {last_score, last_handle, entries}
