-- Shared by the waiting-room scripts (prepended in Rust). Every key shares
-- the event's hash tag, so each script touches one Redis Cluster slot.
--
-- KEYS: 1 room (hash: enabled 0/1, rate per second, opens_ms, max_active
--         (0: no cap), joined, admitted, at_ms = Redis time the admitted
--         counter was last advanced to, pre = how many joined before
--         opening, drawn = '1' once their places are drawn, seed (hex),
--         w_at/w_admitted/pace = the measured admission pace, per 1000 s,
--         expires_ms = when the room's keys expire, a day after the event
--         ends; 0: never)
--       2 line (zset: user id -> join number, 1 first)
--       3 pre (zset: user id -> arrival number, joiners before opening)
--       4 active (zset: admitted user id -> Redis time their admission ends)
local ROOM, LINE, PRE, ACTIVE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

-- Most people let through in one script call: a long stall is paid off over
-- a few calls instead of blocking Redis for one big one.
local ADMIT_BATCH = 5000
-- The pace is measured over windows of this many milliseconds.
local PACE_WINDOW_MS = 5000

-- Redis server time in milliseconds: every instance agrees on it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- ZADD of score/member pairs, a bounded number per call (Lua's unpack has a
-- small stack).
local function zadd_pairs(key, flat)
  for first = 1, #flat, 2000 do
    redis.call('ZADD', key, unpack(flat, first, math.min(first + 1999, #flat)))
  end
end

-- The room's state as a table (numbers where numbers are kept).
local function room_state()
  local r = redis.call('HMGET', ROOM, 'enabled', 'rate', 'opens_ms', 'joined', 'admitted',
    'at_ms', 'max_active', 'pre', 'drawn', 'pace', 'expires_ms')
  return {
    enabled = r[1] == '1',
    rate = tonumber(r[2] or '0') or 0,
    opens = tonumber(r[3] or '0') or 0,
    joined = tonumber(r[4] or '0') or 0,
    admitted = tonumber(r[5] or '0') or 0,
    at = tonumber(r[6] or '0') or 0,
    max_active = tonumber(r[7] or '0') or 0,
    pre = tonumber(r[8] or '0') or 0,
    drawn = r[9] == '1',
    pace = tonumber(r[10] or '0') or 0,
    expires = tonumber(r[11] or '0') or 0,
  }
end

-- A key the room just created lives as long as the room.
local function expire_with_room(key, s)
  if s.expires > 0 then
    redis.call('PEXPIREAT', key, s.expires)
  end
end

-- Whether the pre-queue still waits for its draw: a room with an opening
-- time (or anyone in the pre-queue) draws once, when it opens.
local function draw_pending(s)
  return not s.drawn and (s.opens > 0 or s.pre > 0)
end

-- Lets people through up to `now`, atomically: at the room's rate, never
-- more than `max_active` admitted shoppers at once, never ahead of the line.
-- Capacity nobody was waiting for (or that the cap withheld) is dropped, so
-- a burst after a quiet spell still goes through at the rate. Each admitted
-- user's admission lasts `ttl` ms from being let through. Nobody is let
-- through before the pre-queue's places are drawn. Returns the state, with
-- `draw_due` set when it is time to draw.
local function advance(now, ttl)
  local s = room_state()
  s.draw_due = false
  if not s.enabled or s.rate <= 0 then
    return s
  end
  if draw_pending(s) then
    s.draw_due = now >= s.opens
    return s
  end
  local at = s.at
  if at < s.opens then
    at = s.opens
  end
  if now <= at then
    return s
  end
  redis.call('ZREMRANGEBYSCORE', ACTIVE, '-inf', now)
  local gained = math.floor((now - at) * s.rate / 1000)
  if gained <= 0 then
    return s
  end
  local allowed = math.min(gained, s.joined - s.admitted, ADMIT_BATCH)
  if s.max_active > 0 then
    allowed = math.min(allowed, s.max_active - redis.call('ZCARD', ACTIVE))
  end
  if allowed < 0 then
    allowed = 0
  end
  if allowed > 0 then
    local users = redis.call('ZRANGEBYSCORE', LINE, s.admitted + 1, s.admitted + allowed)
    local until_ms = now + ttl
    local pairs_ = {}
    for _, user in ipairs(users) do
      pairs_[#pairs_ + 1] = until_ms
      pairs_[#pairs_ + 1] = user
    end
    zadd_pairs(ACTIVE, pairs_)
    expire_with_room(ACTIVE, s)
    s.admitted = s.admitted + allowed
  end
  if allowed == ADMIT_BATCH and gained > ADMIT_BATCH then
    -- Keep what the batch left over (and the fraction of a person).
    at = at + allowed * 1000 / s.rate
  elseif allowed == gained then
    at = at + gained * 1000 / s.rate
  else
    at = now
  end
  local w = redis.call('HMGET', ROOM, 'w_at', 'w_admitted')
  local w_at, w_admitted = tonumber(w[1] or '0') or 0, tonumber(w[2] or '0') or 0
  if w_at == 0 then
    redis.call('HSET', ROOM, 'w_at', now, 'w_admitted', s.admitted - allowed)
  elseif now - w_at >= PACE_WINDOW_MS then
    s.pace = math.floor((s.admitted - w_admitted) * 1000000 / (now - w_at))
    redis.call('HSET', ROOM, 'w_at', now, 'w_admitted', s.admitted, 'pace', s.pace)
  end
  redis.call('HSET', ROOM, 'admitted', s.admitted, 'at_ms', string.format('%.3f', at))
  return s
end

-- The reply for someone in line at `place`: the state and, once admitted,
-- when their admission ends ('-1' when it is over).
local function in_line(user, place, s, now)
  local until_ms = 0
  if place <= s.admitted then
    until_ms = tonumber(redis.call('ZSCORE', ACTIVE, user) or '-1')
  end
  -- Last: whether the pre-queue's draw is due, so any look (a late
  -- arrival's too) gets it started.
  return {'IN', place, s.admitted, s.rate, s.opens, now, s.pace, until_ms,
    s.draw_due and 1 or 0}
end

-- The reply for someone in the pre-queue whose place is not drawn yet.
local function early(s, now)
  return {'EARLY', s.opens, now, s.draw_due and 1 or 0, s.rate}
end
