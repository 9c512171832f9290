-- hold: all or nothing, atomically. Refuses a hold the waiting room does not
-- admit, then drops expired holds, refuses a closed event, an owner at their
-- hold limit, a seat out of range, or any seat that is sold or held;
-- otherwise marks the seats held, records the hold and appends to the change
-- stream. Answers whether this hold now expires first among the event's live
-- holds: only then must the caller put the event on the global sweep index
-- (another slot, so not here); otherwise it is already there no later than
-- this expiry.
-- A tier with a dynamic price (the meta hash's `pricing` table, see
-- domain/pricing.rs) is priced here from the sold bits of its seats at
-- this very moment (`price_locks`, price_lock.lua, which waitlist offers
-- share), and the price is locked into the hold's record
-- (`p`: tier -> {price, sold, seats}); the total follows it.
-- A best-available hold with a maximum price is refused ('PRICE_ABOVE',
-- before anything changes) when a dynamic tier's price here is above it:
-- the filter compares the very price the hold would lock.
-- ARGV: hold id, owner, ttl ms, max holds per owner, stream maxlen,
--       tombstone ms, total price minor at base prices, currency, the
--       hold's seats by tier ('tier:count:base;...', may be empty), the
--       maximum price per seat in minor units ('' for none),
--       seat..., and last, when
--       the room keys (KEYS[9], KEYS[10]) are given, the admission token as
--       Rust found it: 'none', 'invalid' or its expiry in ms (the signature
--       is checked). While the room is on, the owner must also still be an
--       active shopper: an admission serves one hold sequence, which ends
--       when the owner has no live hold left after buying, releasing or
--       letting holds expire.
local id, owner = ARGV[1], ARGV[2]
local ttl, max_holds = tonumber(ARGV[3]), tonumber(ARGV[4])
local maxlen, grave_ms = ARGV[5], tonumber(ARGV[6])
local last_seat = #ARGV
if ROOM then
  last_seat = #ARGV - 1
end
if redis.call('EXISTS', META) == 0 then
  return {'NOMETA'}
end
local now = now_ms()
local room_on = room_enabled()
if room_on then
  local admission = ARGV[#ARGV]
  if admission == 'none' then
    return {'ADMISSION_REQUIRED'}
  end
  local expires_ms = tonumber(admission)
  if not expires_ms then
    return {'ADMISSION_INVALID'}
  end
  if expires_ms <= now then
    return {'ADMISSION_EXPIRED'}
  end
  if tonumber(redis.call('ZSCORE', ACTIVE, owner) or '0') <= now then
    return {'ADMISSION_USED'}
  end
end
drop_expired(now, grave_ms, maxlen, 100)
local meta = redis.call('HMGET', META, 'status', 'on_sale_ms', 'seat_count', 'pricing')
if meta[1] ~= 'open' or now < tonumber(meta[2]) then
  return {'CLOSED'}
end
local seat_count = tonumber(meta[3])
if tonumber(redis.call('HGET', OWNERS, owner) or '0') >= max_holds then
  return {'TOO_MANY_HOLDS'}
end
local seats, taken = {}, {}
for i = 11, last_seat do
  local seat = tonumber(ARGV[i])
  if seat >= seat_count then
    return {'OUT_OF_RANGE', seat}
  end
  if redis.call('GETBIT', SOLD, seat) == 1 or redis.call('GETBIT', HELD, seat) == 1 then
    taken[#taken + 1] = seat
  end
  seats[#seats + 1] = seat
end
if #taken > 0 then
  return {'TAKEN', unpack(taken)}
end
local locks, total = nil, tonumber(ARGV[7])
if meta[4] and ARGV[9] ~= '' then
  locks, total = price_locks(cjson.decode(meta[4]), ARGV[9], total)
end
local max_price = tonumber(ARGV[10])
if locks and max_price then
  for tier, lock in pairs(locks) do
    if lock[1] > max_price then
      return {'PRICE_ABOVE', tier, lock[1]}
    end
  end
end
for _, seat in ipairs(seats) do
  redis.call('SETBIT', HELD, seat, 1)
end
local expires = now + ttl
local head = redis.call('ZRANGE', EXPIRY, 0, 0, 'WITHSCORES')
local first = 0
if not head[2] or expires < tonumber(head[2]) then
  first = 1
end
local record = {o = owner, s = seats, e = expires, c = now, t = total, cur = ARGV[8], st = 'active', p = locks}
local encoded = cjson.encode(record)
redis.call('HSET', HOLDS, id, encoded)
redis.call('ZADD', EXPIRY, expires, id)
redis.call('HINCRBY', OWNERS, owner, 1)
if room_on then
  -- An active shopper's place lasts at least as long as their hold.
  redis.call('ZADD', ACTIVE, 'GT', expires, owner)
end
local cursor = append_change('h', seats, maxlen)
return {'OK', encoded, cursor, first}
