-- pricing: sets (or, with '', removes) the event's dynamic pricing table
-- after PostgreSQL recorded the rule, and tells watchers with a status
-- change. Holds from now on lock prices from it; holds taken before keep
-- theirs. Compare-and-set on the rule's version: a table older than (or
-- as old as) the one Redis has is refused ('STALE'), so two admins setting
-- rules at once leave the last one PostgreSQL committed, whichever of
-- them reaches Redis last.
-- ARGV: pricing table (JSON or ''), stream maxlen, rule version
local pricing, maxlen, version = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', META) == 0 then
  -- Lost state: the caller rebuilds it from PostgreSQL (rule included).
  return {'NOMETA'}
end
local current = tonumber(redis.call('HGET', META, 'pricing_version') or '0') or 0
if version <= current then
  return {'STALE', tostring(current)}
end
if pricing == '' then
  redis.call('HDEL', META, 'pricing')
else
  redis.call('HSET', META, 'pricing', pricing)
end
redis.call('HSET', META, 'pricing_version', version)
return {'OK', append_change('c', {}, maxlen)}
