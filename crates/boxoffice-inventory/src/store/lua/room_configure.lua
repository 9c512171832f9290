-- room_configure: turns the room on or off and sets its rate and opening
-- time. The line is kept: the admitted counter is first advanced under the
-- old settings, so a rate change applies from now, and a room turned on
-- again lets nobody through for the time it was off.
-- ARGV: enabled (0/1), rate per second, opens_ms (0: from now)
-- Returns {joined, admitted, now}.
local enable, rate, opens = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local was_enabled, _, _, joined, admitted = advance(now)
if enable then
  local at = now
  if was_enabled then
    at = tonumber(redis.call('HGET', ROOM, 'at_ms') or now) or now
  end
  redis.call('HSET', ROOM, 'enabled', '1', 'rate', rate, 'opens_ms', opens,
    'joined', joined, 'admitted', admitted, 'at_ms', string.format('%.3f', at))
else
  redis.call('HSET', ROOM, 'enabled', '0', 'joined', joined, 'admitted', admitted)
end
return {joined, admitted, now}
