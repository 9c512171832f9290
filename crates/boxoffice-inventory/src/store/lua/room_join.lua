-- room_join: gives each user a place in line, or the place they already
-- have; joins that arrive together are one call. Before opening (and until
-- the draw) a joiner lines up in the pre-queue without a place; after it,
-- places go in arrival order behind the drawn ones (a batch's users in
-- their order in it).
-- ARGV: admission ttl ms, user id...
-- Returns one reply per user: {'OFF'}, {'EARLY', opens_ms, now, draw due
-- 0/1, rate} or {'IN', join number, admitted, rate, opens_ms, now, pace,
-- admission end, draw due 0/1}.
local ttl = tonumber(ARGV[1])
local now = now_ms()
local s = advance(now, ttl)

local function join_one(user)
  if not s.enabled then
    return {'OFF'}
  end
  local place = redis.call('ZSCORE', LINE, user)
  if place then
    return in_line(user, tonumber(place), s, now)
  end
  if redis.call('ZSCORE', PRE, user) then
    return early(s, now)
  end
  if draw_pending(s) and now < s.opens then
    local arrival = redis.call('HINCRBY', ROOM, 'joined', 1)
    s.pre = redis.call('HINCRBY', ROOM, 'pre', 1)
    redis.call('ZADD', PRE, arrival, user)
    expire_with_room(PRE, s)
    return early(s, now)
  end
  -- Behind everyone already in line or in the pre-queue.
  place = redis.call('HINCRBY', ROOM, 'joined', 1)
  redis.call('ZADD', LINE, place, user)
  expire_with_room(LINE, s)
  s.joined = place
  return in_line(user, place, s, now)
end

local replies = {}
for i = 2, #ARGV do
  replies[#replies + 1] = join_one(ARGV[i])
end
return replies
