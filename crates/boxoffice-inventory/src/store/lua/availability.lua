-- availability: both bitmaps, the event's status and the change-stream
-- position they correspond to, read atomically in one round trip, with
-- whether the waiting room is on and when the earliest live hold expires
-- (until then every held bit is a live hold), and the dynamic pricing
-- table ('' when every price is fixed).
-- ARGV: none
if redis.call('EXISTS', META) == 0 then
  return {'NOMETA'}
end
local meta = redis.call('HMGET', META, 'status', 'on_sale_ms', 'seat_count', 'epoch', 'pricing')
local last = redis.call('XREVRANGE', CHANGES, '+', '-', 'COUNT', 1)
local cursor = '0-0'
if last[1] then
  cursor = last[1][1]
end
local head = redis.call('ZRANGE', EXPIRY, 0, 0, 'WITHSCORES')
return {
  'OK', meta[1], meta[2], meta[3], meta[4],
  redis.call('GET', SOLD) or '', redis.call('GET', HELD) or '',
  cursor, tostring(now_ms()), room_enabled() and '1' or '0', head[2] or '-1',
  meta[5] or '',
}
