-- mark_sold: mirrors a PostgreSQL commit into Redis after it happened. Sets
-- the sold bits, ends the hold as committed (when it is still recorded) and
-- appends to the change stream. With mode 'unsell' it clears sold bits
-- instead (seats back on sale). Never decides anything: PostgreSQL did.
-- ARGV: mode ('hold' | 'seats' | 'unsell'), stream maxlen, tombstone ms,
--       hold id (or ''), booking id (or ''), sale id (or ''), seat...
local mode, maxlen, grave_ms, id, booking, sale = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', META) == 0 then
  -- Lost state: the next request rebuilds it from PostgreSQL.
  return {'NOMETA'}
end
local seats = {}
for i = 7, #ARGV do
  seats[#seats + 1] = tonumber(ARGV[i])
end
if mode == 'unsell' then
  for _, seat in ipairs(seats) do
    redis.call('SETBIT', SOLD, seat, 0)
  end
  return {'OK', append_change('u', seats, maxlen)}
end
for _, seat in ipairs(seats) do
  redis.call('SETBIT', SOLD, seat, 1)
end
if mode == 'hold' then
  local raw = redis.call('HGET', HOLDS, id)
  if raw then
    local record = cjson.decode(raw)
    record.b = booking
    if sale ~= '' then
      record.x = sale
    end
    if record.st == 'active' then
      end_hold(id, record, 'committed', 's', now_ms(), grave_ms, maxlen)
      return {'OK'}
    end
    -- Swept after the commit: keep the tombstone, say it sold.
    record.st = 'committed'
    redis.call('HSET', HOLDS, id, cjson.encode(record))
  end
end
return {'OK', append_change('s', seats, maxlen)}
