-- Shared by every inventory script (prepended in Rust). All keys of one event
-- share its hash tag, so each script touches one Redis Cluster slot.
--
-- KEYS: 1 meta (hash: status, on_sale_ms, seat_count, epoch)
--       2 held bitmap   3 sold bitmap
--       4 holds (hash: hold id -> JSON record, kept a while after it ends)
--       5 live holds by expiry (zset)   6 active holds per owner (hash)
--       7 change stream   8 ended holds by forget time (zset)
--       9 (optional) the waiting room (hash, see room_common.lua), under the
--         same hash tag   10 (with 9) the room's active shoppers (zset)
local META, HELD, SOLD, HOLDS, EXPIRY, OWNERS, CHANGES, GRAVES, ROOM, ACTIVE =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]

-- Redis server time in milliseconds: every instance agrees on it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function append_change(kind, seats, maxlen)
  return redis.call('XADD', CHANGES, 'MAXLEN', '~', maxlen, '*', 'k', kind, 's', table.concat(seats, ','))
end

-- Whether holds on this event need an admission token right now.
local function room_enabled()
  return ROOM ~= nil and redis.call('HGET', ROOM, 'enabled') == '1'
end

-- waitlist (see waitlist.rs and waitlist_offer.lua) -------------------
-- While anyone waits on the event's waitlist (meta `wl` > 0, kept by
-- waitlist_offer.lua), seats that come back stay held, parked in meta `wp`
-- for the next offer, so nobody outside the line can take them. Answers
-- whether it parked them.
local function park_for_waitlist(seats)
  if tonumber(redis.call('HGET', META, 'wl') or '0') <= 0 then
    return false
  end
  local list = {}
  local parked = redis.call('HGET', META, 'wp') or ''
  if parked ~= '' then
    list[1] = parked
  end
  for _, seat in ipairs(seats) do
    redis.call('SETBIT', HELD, seat, 1)
    list[#list + 1] = tostring(seat)
  end
  redis.call('HSET', META, 'wp', table.concat(list, ','))
  return true
end
-- end waitlist --------------------------------------------------------

-- Ends a live hold: frees its held bits (sold bits are the caller's job;
-- seats that come back while people wait are parked for the waitlist),
-- keeps the record as a tombstone until `now + grave_ms`, appends `kind`.
local function end_hold(id, record, state, kind, now, grave_ms, maxlen)
  local parked = (kind == 'x' or kind == 'r') and park_for_waitlist(record.s)
  if parked then
    kind = 'h'
  else
    for _, seat in ipairs(record.s) do
      redis.call('SETBIT', HELD, seat, 0)
    end
  end
  record.st = state
  local encoded = cjson.encode(record)
  redis.call('HSET', HOLDS, id, encoded)
  redis.call('ZREM', EXPIRY, id)
  redis.call('ZADD', GRAVES, now + grave_ms, id)
  if redis.call('HINCRBY', OWNERS, record.o, -1) <= 0 then
    redis.call('HDEL', OWNERS, record.o)
    -- The owner's hold sequence is over (bought, released or run out): their
    -- admission ends and frees its place among the active shoppers.
    if ACTIVE then
      redis.call('ZREM', ACTIVE, record.o)
    end
  end
  local cursor = append_change(kind, record.s, maxlen)
  return encoded, cursor
end

-- Ends holds whose time is up and forgets old tombstones; returns how many
-- holds expired.
local function drop_expired(now, grave_ms, maxlen, limit)
  local ids = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    local raw = redis.call('HGET', HOLDS, id)
    if raw then
      end_hold(id, cjson.decode(raw), 'expired', 'x', now, grave_ms, maxlen)
    else
      redis.call('ZREM', EXPIRY, id)
    end
  end
  local old = redis.call('ZRANGEBYSCORE', GRAVES, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(old) do
    redis.call('HDEL', HOLDS, id)
    redis.call('ZREM', GRAVES, id)
  end
  return #ids
end
