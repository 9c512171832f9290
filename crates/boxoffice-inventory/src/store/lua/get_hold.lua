-- get_hold: a hold's record and the Redis server's time, read together.
-- ARGV: hold id
local raw = redis.call('HGET', HOLDS, ARGV[1])
if not raw then
  return {'NOT_FOUND'}
end
return {'OK', raw, tostring(now_ms())}
