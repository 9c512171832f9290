-- room_configure: turns the room on or off and sets its rate, cap on active
-- shoppers and opening time. The line is kept: the admitted counter is
-- first advanced under the old settings, so a change applies from now, and
-- a room turned on again lets nobody through for the time it was off.
-- ARGV: enabled (0/1), rate per second, opens_ms (0: from now), max active
--       (0: no cap), admission ttl ms, when the room's keys expire (ms, a
--       day after the event ends; 0: never)
-- Returns {joined, admitted, now, active, pre, drawn 0/1, seed, pace}.
local enable, rate, opens = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3])
local max_active, ttl, expires = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local s = advance(now, ttl)
if enable then
  local at = now
  if s.enabled then
    at = tonumber(redis.call('HGET', ROOM, 'at_ms') or now) or now
  end
  redis.call('HSET', ROOM, 'enabled', '1', 'rate', rate, 'opens_ms', opens,
    'max_active', max_active, 'joined', s.joined, 'admitted', s.admitted,
    'at_ms', string.format('%.3f', at))
else
  redis.call('HSET', ROOM, 'enabled', '0', 'max_active', max_active, 'joined', s.joined,
    'admitted', s.admitted)
end
redis.call('HSET', ROOM, 'expires_ms', expires)
if expires > 0 then
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIREAT', key, expires)
  end
end
redis.call('ZREMRANGEBYSCORE', ACTIVE, '-inf', now)
local drawn = redis.call('HMGET', ROOM, 'drawn', 'seed')
return {s.joined, s.admitted, now, redis.call('ZCARD', ACTIVE), s.pre,
  drawn[1] == '1' and 1 or 0, drawn[2] or '', s.pace}
