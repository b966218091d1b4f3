-- Applies one Put delta to a session atomically (layout: codec.rs).
-- KEYS[1] session key
-- ARGV[1] now (ms)   ARGV[2] expected version or ''   ARGV[3] max session bytes
-- ARGV[4] max attributes   ARGV[5] new idle timeout (ms) or ''
-- ARGV[6] '' to keep the principal, or '=' followed by the new principal
-- ARGV[7] the session's handle ('' for an id of the first form, which has no index)
-- ARGV[8] number of names to set, followed by that many name/value pairs, followed by the names
-- to remove.
-- KEYS[2] (tagged ids) the index of the slot's principal: its entry follows the activity, and
-- leaves when the principal is cleared. Left out while the slot migrates, for sessions without
-- a principal.
-- Returns {1, new_blob} | {0} not found, expired or moved | {-1, current_version}
--       | {-2, total_bytes} too large | {-3, count} too many attributes
--       | {-6} the session has a principal: call again with KEYS[2]
local blob = redis.call('GET', KEYS[1])
if not blob then return {0} end
-- Format 2 is the forwarding record of a session that moved to another id.
if string.byte(blob, 1) ~= 1 then return {0} end

local version, created, last, idle, abs, plen, pos = struct.unpack('>I8I8I8I8I8I4', blob, 2)
local now = tonumber(ARGV[1])
local expires = last + idle
if abs > 0 and abs < expires then expires = abs end
if expires <= now then return {0} end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= version then return {-1, version} end

local principal = string.sub(blob, pos, pos + plen - 1)
local indexed = plen > 0
-- Called without the index (its slot migrating: store/lua.rs) for a session that has one.
if indexed and ARGV[7] ~= '' and not KEYS[2] then return {-6} end
pos = pos + plen
if ARGV[5] ~= '' then idle = tonumber(ARGV[5]) end
if ARGV[6] ~= '' then
  principal = string.sub(ARGV[6], 2)
  plen = #principal
end
local count
count, pos = struct.unpack('>I4', blob, pos)
local names, values, index = {}, {}, {}
for i = 1, count do
  local len
  len, pos = struct.unpack('>I4', blob, pos)
  names[i] = string.sub(blob, pos, pos + len - 1)
  pos = pos + len
  len, pos = struct.unpack('>I4', blob, pos)
  values[i] = string.sub(blob, pos, pos + len - 1)
  pos = pos + len
  index[names[i]] = i
end

local arg = 9
for _ = 1, tonumber(ARGV[8]) do
  local name, value = ARGV[arg], ARGV[arg + 1]
  arg = arg + 2
  local i = index[name]
  if i then
    values[i] = value
  else
    i = #names + 1
    names[i], values[i], index[name] = name, value, i
  end
end
for j = arg, #ARGV do
  local i = index[ARGV[j]]
  if i then values[i] = false end
end

local parts, total, kept = {}, 0, 0
for i = 1, #names do
  local value = values[i]
  if value then
    kept = kept + 1
    total = total + #names[i] + #value
    parts[kept] = struct.pack('>I4', #names[i]) .. names[i] .. struct.pack('>I4', #value) .. value
  end
end
if kept > tonumber(ARGV[4]) then return {-3, kept} end
if total > tonumber(ARGV[3]) then return {-2, total} end

version = version + 1
expires = now + idle
if abs > 0 and abs < expires then expires = abs end
local out = string.char(1) .. struct.pack('>I8I8I8I8I8I4', version, created, now, idle, abs, plen)
  .. principal .. struct.pack('>I4', kept) .. table.concat(parts)
redis.call('SET', KEYS[1], out, 'PXAT', expires)
if KEYS[2] and indexed then
  if plen == 0 then
    redis.call('ZREM', KEYS[2], ARGV[7])
  elseif redis.call('ZADD', KEYS[2], 'XX', 'CH', now, ARGV[7]) == 1
      and redis.call('PEXPIRETIME', KEYS[2]) < expires then
    redis.call('PEXPIREAT', KEYS[2], expires)
  end
end
return {1, out}
