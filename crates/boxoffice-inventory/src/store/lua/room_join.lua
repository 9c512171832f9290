-- room_join: gives a user a place in line, or the place they already have.
-- ARGV: user id
-- Returns {'OFF'} or {'IN', join number, admitted, rate, opens_ms, now}.
local user = ARGV[1]
local now = now_ms()
local enabled, rate, opens, joined, admitted = advance(now)
if not enabled then
  return {'OFF'}
end
local place = redis.call('ZSCORE', LINE, user)
if not place then
  place = redis.call('HINCRBY', ROOM, 'joined', 1)
  redis.call('ZADD', LINE, place, user)
end
return {'IN', tonumber(place), admitted, rate, opens, now}
