-- sweep: ends the event's expired holds (the background sweeper calls this
-- so watchers see seats come back on time) and answers when the next live
-- hold expires (-1 when none is left).
-- ARGV: stream maxlen, tombstone ms, batch limit
local maxlen, grave_ms, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local expired = drop_expired(now, grave_ms, maxlen, limit)
local next_hold = redis.call('ZRANGE', EXPIRY, 0, 0, 'WITHSCORES')
local next_expiry = -1
if next_hold[2] then
  next_expiry = tonumber(next_hold[2])
end
return {expired, next_expiry}
