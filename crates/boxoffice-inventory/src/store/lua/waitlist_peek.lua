-- waitlist_peek: what the waitlist's pass needs to decide, read together:
-- the Redis server's time (for logs), the seats parked for the waitlist and the
-- records of the open offers' holds.
-- ARGV: hold id...
-- Returns: 'OK', now ms, parked seats ('1,5,9'), the users recorded as
-- waiting (meta `wl`), then per hold its JSON
-- record or '' when there is none; or 'NOMETA'.
if redis.call('EXISTS', META) == 0 then
  return {'NOMETA'}
end
local found = {'OK', tostring(now_ms()), redis.call('HGET', META, 'wp') or '',
  redis.call('HGET', META, 'wl') or '0'}
for i = 1, #ARGV do
  found[#found + 1] = redis.call('HGET', HOLDS, ARGV[i]) or ''
end
return found
