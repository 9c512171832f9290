-- waitlist_offer: hands parked seats to users of the waitlist as holds in
-- their names (marked `w`), all or nothing: refused ('STALE') when any
-- seat named is no longer parked, so a seat is never offered twice. Then
-- records how many users still wait (meta `wl`, which makes released seats
-- park, see common.lua); with nobody waiting, every seat still parked goes
-- back on sale. Offers are made only while the event is open.
-- An offer's dynamic tiers are priced exactly as hold.lua prices a hold
-- (`price_locks`, price_lock.lua, in this same atomic step): the offer's
-- record carries the locks (`p`) and the total they give, so the offered
-- user pays the current price, not the tier's base.
-- Parked seats nobody in line waits for (a tier no entry wants) are named
-- to be freed: they go back on sale (all or nothing with the offers).
-- ARGV: users still waiting, offer ttl ms, stream maxlen, tombstone ms,
--       currency, the count of seats to free and those seats, then per
--       offer: hold id, owner, total price minor at base prices, its seats
--       by tier ('tier:count:base;...', may be empty), seat count, that
--       many seats
-- Returns: 'OK', expiry ms, 1 when an offer expires first among the live
-- holds (the caller puts the event on the sweep index); or 'NOMETA',
-- 'STALE', 'CLOSED'.
local waiting, ttl, maxlen = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local currency = ARGV[5]
if redis.call('EXISTS', META) == 0 then
  return {'NOMETA'}
end
local now = now_ms()
local parked = {}
local raw = redis.call('HGET', META, 'wp') or ''
for seat in string.gmatch(raw, '%d+') do
  parked[tonumber(seat)] = true
end
local freed = {}
local free_count = tonumber(ARGV[6])
for k = 7, 6 + free_count do
  local seat = tonumber(ARGV[k])
  if not parked[seat] then
    return {'STALE'}
  end
  parked[seat] = nil
  freed[#freed + 1] = seat
end
local offers = {}
local i = 7 + free_count
while i <= #ARGV do
  local count = tonumber(ARGV[i + 4])
  local seats = {}
  for j = i + 5, i + 4 + count do
    local seat = tonumber(ARGV[j])
    if not parked[seat] then
      return {'STALE'}
    end
    parked[seat] = nil
    seats[#seats + 1] = seat
  end
  offers[#offers + 1] = {id = ARGV[i], owner = ARGV[i + 1], total = tonumber(ARGV[i + 2]),
    groups = ARGV[i + 3], seats = seats}
  i = i + 5 + count
end
if #offers > 0 and redis.call('HGET', META, 'status') ~= 'open' then
  return {'CLOSED'}
end
local expires = now + ttl
local first = 0
if #offers > 0 then
  local head = redis.call('ZRANGE', EXPIRY, 0, 0, 'WITHSCORES')
  if not head[2] or expires < tonumber(head[2]) then
    first = 1
  end
end
local pricing = nil
if #offers > 0 then
  local table_json = redis.call('HGET', META, 'pricing')
  if table_json then
    pricing = cjson.decode(table_json)
  end
end
for _, offer in ipairs(offers) do
  -- The held bits are set already (parked).
  local locks, total = nil, offer.total
  if pricing and offer.groups ~= '' then
    locks, total = price_locks(pricing, offer.groups, total)
  end
  local record = {o = offer.owner, s = offer.seats, e = expires, c = now, t = total,
    cur = currency, st = 'active', w = 1, p = locks}
  redis.call('HSET', HOLDS, offer.id, cjson.encode(record))
  redis.call('ZADD', EXPIRY, expires, offer.id)
  redis.call('HINCRBY', OWNERS, offer.owner, 1)
  append_change('h', offer.seats, maxlen)
end
if #freed > 0 then
  for _, seat in ipairs(freed) do
    redis.call('SETBIT', HELD, seat, 0)
  end
  append_change('r', freed, maxlen)
end
local left = {}
for seat in pairs(parked) do
  left[#left + 1] = seat
end
table.sort(left)
if waiting <= 0 and #left > 0 then
  for _, seat in ipairs(left) do
    redis.call('SETBIT', HELD, seat, 0)
  end
  append_change('r', left, maxlen)
  left = {}
end
local kept = {}
for k, seat in ipairs(left) do
  kept[k] = tostring(seat)
end
redis.call('HSET', META, 'wl', waiting, 'wp', table.concat(kept, ','))
return {'OK', expires, first}
