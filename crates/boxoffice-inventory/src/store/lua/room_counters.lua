-- room_counters: the room's counters (for admins, and for the one poller
-- per event per process that every WatchQueue stream of the event follows),
-- advancing admission first.
-- ARGV: admission ttl ms
-- Returns {joined, admitted, now, active, pre, drawn 0/1, seed, pace,
--          enabled 0/1, rate, opens_ms, draw due 0/1}.
local ttl = tonumber(ARGV[1])
local now = now_ms()
local s = advance(now, ttl)
redis.call('ZREMRANGEBYSCORE', ACTIVE, '-inf', now)
local drawn = redis.call('HMGET', ROOM, 'drawn', 'seed')
return {s.joined, s.admitted, now, redis.call('ZCARD', ACTIVE), s.pre,
  drawn[1] == '1' and 1 or 0, drawn[2] or '', s.pace,
  s.enabled and 1 or 0, s.rate, s.opens, s.draw_due and 1 or 0}
