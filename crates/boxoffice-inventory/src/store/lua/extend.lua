-- extend: gives a live hold more time (checkout, while its buyer completes
-- a payment step at the provider). The new expiry is now + wanted (the
-- bound when wanted is 0), never earlier than the current expiry and never
-- later than the hold's original expiry (kept in the record as `oe` from
-- the first extension on) plus max extension. Someone else's hold answers
-- exactly like a missing one; an ended hold answers its state, and a hold
-- whose time is up is ended here as expired (as release.lua does).
-- Only ever moves an expiry later, so the global sweep index (an event's
-- earliest expiry or earlier) stays right without being touched: the
-- sweeper wakes at the old time, finds nothing due and reschedules the
-- event at its next expiry (sweep.lua).
-- ARGV: hold id, owner, wanted ms (0: the bound), max extension ms,
--       stream maxlen, tombstone ms
local id, owner = ARGV[1], ARGV[2]
local wanted, max_extension = tonumber(ARGV[3]), tonumber(ARGV[4])
local maxlen, grave_ms = ARGV[5], tonumber(ARGV[6])
local raw = redis.call('HGET', HOLDS, id)
if not raw then
  return {'NOT_FOUND'}
end
local record = cjson.decode(raw)
if record.o ~= owner then
  return {'NOT_FOUND'}
end
if record.st ~= 'active' then
  return {'STATE', raw}
end
local now = now_ms()
if record.e <= now then
  local encoded = end_hold(id, record, 'expired', 'x', now, grave_ms, maxlen)
  return {'STATE', encoded}
end
local original = record.oe or record.e
local limit = original + max_extension
local expires = limit
if wanted > 0 and now + wanted < limit then
  expires = now + wanted
end
if expires <= record.e then
  return {'OK', raw}
end
record.oe = original
record.e = expires
local encoded = cjson.encode(record)
redis.call('HSET', HOLDS, id, encoded)
redis.call('ZADD', EXPIRY, 'XX', expires, id)
if ACTIVE then
  -- An admitted shopper's place lasts at least as long as their hold.
  redis.call('ZADD', ACTIVE, 'XX', 'GT', expires, owner)
end
return {'OK', encoded}
