-- room_draw: places a batch of pre-queue joiners at their drawn places
-- (Rust computed them from the seed), and with the last batch marks the
-- draw done, which starts admission. Idempotent: every instance that draws
-- computes the same places from the same seed and the same frozen pre-queue.
-- ARGV: seed (hex), done (0/1), then user id, place, user id, place, ...
-- Returns {'OK'} or {'DRAWN'} when another instance finished first.
local seed, done = ARGV[1], ARGV[2] == '1'
if redis.call('HGET', ROOM, 'drawn') == '1' then
  return {'DRAWN'}
end
local pairs_ = {}
for i = 3, #ARGV, 2 do
  pairs_[#pairs_ + 1] = ARGV[i + 1]
  pairs_[#pairs_ + 1] = ARGV[i]
end
zadd_pairs(LINE, pairs_)
if #pairs_ > 0 then
  expire_with_room(LINE, room_state())
end
if done then
  -- Admission starts now, not at the opening time the draw followed.
  -- The pre-queue stays (until the room's keys expire) for audits.
  redis.call('HSET', ROOM, 'drawn', '1', 'seed', seed, 'at_ms', now_ms())
end
return {'OK'}
