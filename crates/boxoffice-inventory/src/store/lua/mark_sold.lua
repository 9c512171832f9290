-- mark_sold: mirrors PostgreSQL commits into Redis after they happened. Sets
-- the sold bits, ends each hold as committed (when it is still recorded) and
-- appends to the change stream. With mode 'unsell' it clears sold bits
-- instead (seats back on sale). Never decides anything: PostgreSQL did.
-- ARGV: mode ('holds' | 'seats' | 'unsell'), stream maxlen, tombstone ms,
--   then for 'holds', per hold: hold id, booking id, sale id (or ''), seat
--   count, that many seats (every hold committed in one sale statement);
--   for 'seats' and 'unsell': seat...
local mode, maxlen, grave_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', META) == 0 then
  -- Lost state: the next request rebuilds it from PostgreSQL.
  return {'NOMETA'}
end
if mode ~= 'holds' then
  local seats = {}
  for i = 4, #ARGV do
    seats[#seats + 1] = tonumber(ARGV[i])
  end
  local bit = mode == 'unsell' and 0 or 1
  for _, seat in ipairs(seats) do
    redis.call('SETBIT', SOLD, seat, bit)
  end
  local cursor = append_change(mode == 'unsell' and 'u' or 's', seats, maxlen)
  -- waitlist: seats back on sale while people wait are parked for it.
  if mode == 'unsell' and park_for_waitlist(seats) then
    cursor = append_change('h', seats, maxlen)
  end
  return {'OK', cursor}
end
local now = nil
local i = 4
while i <= #ARGV do
  local id, booking, sale, count = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local seats = {}
  for j = i + 4, i + 3 + count do
    seats[#seats + 1] = tonumber(ARGV[j])
  end
  i = i + 4 + count
  for _, seat in ipairs(seats) do
    redis.call('SETBIT', SOLD, seat, 1)
  end
  local raw = redis.call('HGET', HOLDS, id)
  local ended = false
  if raw then
    local record = cjson.decode(raw)
    record.b = booking
    if sale ~= '' then
      record.x = sale
    end
    if record.st == 'active' then
      now = now or now_ms()
      end_hold(id, record, 'committed', 's', now, grave_ms, maxlen)
      ended = true
    else
      -- Swept after the commit: keep the tombstone, say it sold.
      record.st = 'committed'
      redis.call('HSET', HOLDS, id, cjson.encode(record))
    end
  end
  if not ended then
    append_change('s', seats, maxlen)
  end
end
return {'OK'}
