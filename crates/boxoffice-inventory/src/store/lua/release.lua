-- release: the owner gives a live hold back. Someone else's hold answers
-- exactly like a missing one.
-- ARGV: hold id, owner, stream maxlen, tombstone ms
local id, owner, maxlen, grave_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local raw = redis.call('HGET', HOLDS, id)
if not raw then
  return {'NOT_FOUND'}
end
local record = cjson.decode(raw)
if record.o ~= owner then
  return {'NOT_FOUND'}
end
local now = now_ms()
if record.st ~= 'active' then
  return {'STATE', raw}
end
if record.e <= now then
  local encoded = end_hold(id, record, 'expired', 'x', now, grave_ms, maxlen)
  return {'STATE', encoded}
end
local encoded = end_hold(id, record, 'released', 'r', now, grave_ms, maxlen)
return {'OK', encoded}
