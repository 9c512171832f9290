-- room_status: where a user stands, advancing admission first.
-- ARGV: user id, admission ttl ms
-- Returns {'OFF', now}, {'OUT', now} (not in line), the pre-queue's
-- {'EARLY', opens_ms, now, draw due 0/1, rate} or
-- {'IN', join number, admitted, rate, opens_ms, now, pace, admission end, draw due 0/1}.
local user, ttl = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local s = advance(now, ttl)
if not s.enabled then
  return {'OFF', now}
end
local place = redis.call('ZSCORE', LINE, user)
if place then
  return in_line(user, tonumber(place), s, now)
end
if redis.call('ZSCORE', PRE, user) then
  return early(s, now)
end
return {'OUT', now}
