-- get_hold: holds' records and the Redis server's time, read together (one
-- call answers every commit of an event that arrived at once).
-- ARGV: hold id...
-- Returns: now ms, then per hold its JSON record or '' when there is none.
local found = {tostring(now_ms())}
for i = 1, #ARGV do
  found[i + 1] = redis.call('HGET', HOLDS, ARGV[i]) or ''
end
return found
