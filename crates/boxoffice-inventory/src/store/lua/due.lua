-- due: takes the events whose earliest hold has expired off the sweep index
-- (by Redis server time). The sweeper sweeps each and puts it back with its
-- next expiry, so a hold made in between is never lost from the index.
-- KEYS: 1 sweep index (zset: event id -> earliest expiry ms)
-- ARGV: batch limit
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
end
return due
