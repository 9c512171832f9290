-- room_enabled: whether holds on this event need an admission token, with
-- the Redis server time to check the token's expiry against.
-- Returns {0 or 1, now}.
local now = now_ms()
local enabled = redis.call('HGET', ROOM, 'enabled') == '1'
return {enabled and 1 or 0, now}
