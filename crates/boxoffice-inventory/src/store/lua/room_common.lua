-- Shared by the waiting-room scripts (prepended in Rust). Both keys share the
-- event's hash tag, so each script touches one Redis Cluster slot.
--
-- KEYS: 1 room (hash: enabled 0/1, rate per second, opens_ms, joined,
--         admitted, at_ms = Redis time the admitted counter was last advanced to)
--       2 line (zset: user id -> join number, 1 for the first to join)
local ROOM, LINE = KEYS[1], KEYS[2]

-- Redis server time in milliseconds: every instance agrees on it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Lets people through at the room's rate up to `now`, atomically. Admission
-- never runs ahead of the line: capacity nobody was waiting for is dropped,
-- so a burst after a quiet spell still goes through at the rate. Returns
-- enabled, rate, opens_ms, joined, admitted.
local function advance(now)
  local r = redis.call('HMGET', ROOM, 'enabled', 'rate', 'opens_ms', 'joined', 'admitted', 'at_ms')
  local enabled = r[1] == '1'
  local rate = tonumber(r[2] or '0') or 0
  local opens = tonumber(r[3] or '0') or 0
  local joined = tonumber(r[4] or '0') or 0
  local admitted = tonumber(r[5] or '0') or 0
  local at = tonumber(r[6] or '0') or 0
  if enabled and rate > 0 then
    if at < opens then
      at = opens
    end
    if now > at then
      local gained = math.floor((now - at) * rate / 1000)
      if gained > 0 then
        admitted = math.min(admitted + gained, joined)
        -- Keep the fraction of a person not yet let through.
        at = at + gained * 1000 / rate
        redis.call('HSET', ROOM, 'admitted', admitted, 'at_ms', string.format('%.3f', at))
      end
    end
  end
  return enabled, rate, opens, joined, admitted
end
