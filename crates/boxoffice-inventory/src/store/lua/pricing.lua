-- pricing: sets (or, with '', removes) the event's dynamic pricing table
-- after PostgreSQL recorded the rule, and tells watchers with a status
-- change. Holds from now on lock prices from it; holds taken before keep
-- theirs.
-- ARGV: pricing table (JSON or ''), stream maxlen
local pricing, maxlen = ARGV[1], ARGV[2]
if redis.call('EXISTS', META) == 0 then
  -- Lost state: the caller rebuilds it from PostgreSQL (rule included).
  return {'NOMETA'}
end
if pricing == '' then
  redis.call('HDEL', META, 'pricing')
else
  redis.call('HSET', META, 'pricing', pricing)
end
return {'OK', append_change('c', {}, maxlen)}
