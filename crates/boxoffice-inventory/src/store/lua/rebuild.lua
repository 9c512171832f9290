-- rebuild: (re)creates an event's Redis state from PostgreSQL's truth after
-- Redis lost it (flush, restart, failover) or when the event's status
-- changed. Sold bits come from PostgreSQL; held bits from the live holds
-- still recorded; a fresh epoch tells watchers to start over. A waiting
-- room PostgreSQL says is on comes back too, in the same step (so no hold
-- slips through between the two), with an empty line admitting from now.
-- ARGV: mode ('if_missing' | 'full' | 'status'), status, on_sale_ms,
--       seat_count, epoch, stream maxlen, tombstone ms, sold bitmap bytes,
--       room enabled (0/1), room rate per second, room opens_ms, room cap
--       on active shoppers, when the room's state expires (ms; 0: never),
--       the dynamic pricing table (JSON; '' when every price is fixed),
--       the stored rule's version
-- KEYS: the event's, then (optional) its room
local mode, status, on_sale_ms, seat_count = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local epoch, maxlen, grave_ms, sold = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8]
local room_on, room_rate, room_opens = ARGV[9] == '1', ARGV[10], ARGV[11]
local room_cap = ARGV[12] or '0'
local room_expires = tonumber(ARGV[13] or '0') or 0
local pricing = ARGV[14] or ''
local pricing_version = ARGV[15] or '0'
local exists = redis.call('EXISTS', META) == 1
if mode == 'if_missing' and exists then
  return {'EXISTS'}
end
if mode == 'status' then
  if not exists then
    return {'NOMETA'}
  end
  redis.call('HSET', META, 'status', status, 'on_sale_ms', on_sale_ms)
  return {'OK', append_change('c', {}, maxlen)}
end
if sold == '' then
  redis.call('DEL', SOLD)
else
  redis.call('SET', SOLD, sold)
end
redis.call('DEL', HELD, OWNERS)
local now = now_ms()
drop_expired(now, grave_ms, maxlen, 100000)
local live = redis.call('ZRANGE', EXPIRY, 0, -1)
for _, id in ipairs(live) do
  local raw = redis.call('HGET', HOLDS, id)
  if raw then
    local record = cjson.decode(raw)
    for _, seat in ipairs(record.s) do
      redis.call('SETBIT', HELD, seat, 1)
    end
    redis.call('HINCRBY', OWNERS, record.o, 1)
  else
    redis.call('ZREM', EXPIRY, id)
  end
end
if ROOM and room_on and redis.call('EXISTS', ROOM) == 0 then
  redis.call('HSET', ROOM, 'enabled', '1', 'rate', room_rate, 'opens_ms', room_opens,
    'max_active', room_cap, 'joined', 0, 'admitted', 0, 'at_ms', now,
    'expires_ms', room_expires)
  if room_expires > 0 then
    redis.call('PEXPIREAT', ROOM, room_expires)
  end
end
redis.call('HSET', META, 'status', status, 'on_sale_ms', on_sale_ms, 'seat_count', seat_count, 'epoch', epoch)
if pricing == '' then
  redis.call('HDEL', META, 'pricing')
else
  redis.call('HSET', META, 'pricing', pricing)
end
redis.call('HSET', META, 'pricing_version', pricing_version)
return {'OK', append_change('z', {}, maxlen)}
