-- room_status: where a user stands, advancing admission first.
-- ARGV: user id
-- Returns {'OFF'}, {'OUT', now} (not in line) or
-- {'IN', join number, admitted, rate, opens_ms, now}.
local user = ARGV[1]
local now = now_ms()
local enabled, rate, opens, joined, admitted = advance(now)
if not enabled then
  return {'OFF', now}
end
local place = redis.call('ZSCORE', LINE, user)
if not place then
  return {'OUT', now}
end
return {'IN', tonumber(place), admitted, rate, opens, now}
