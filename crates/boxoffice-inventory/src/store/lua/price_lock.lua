-- Dynamic prices as a hold locks them, shared by hold.lua and
-- waitlist_offer.lua (prepended after common.lua): a tier with a rule in the
-- meta hash's `pricing` table (see domain/pricing.rs) is priced from the
-- sold bits of its seats at this very moment, in the script's own atomic
-- step, so an ordinary hold and a waitlist offer lock the same price.
-- Integer division of non-negative integers, exact for values below 2^53.
local function idiv(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

-- The same function as domain::pricing::tier_price: base + steps * delta,
-- clamped, with delta = base * d / 10000 truncated toward zero.
local function tier_price(rule, sold)
  local steps = 0
  if rule.n > 0 then
    steps = idiv(sold * 10000, rule.n * rule.y)
  end
  local scaled = rule.b * rule.d
  local delta
  if scaled >= 0 then
    delta = idiv(scaled, 10000)
  else
    delta = -idiv(-scaled, 10000)
  end
  local price = rule.b + delta * steps
  if price < rule.f then price = rule.f end
  if price > rule.c then price = rule.c end
  return price
end

-- Prices the hold's dynamic tiers from the sold bits now; answers the
-- locks (nil when no tier of the hold is dynamic) and the new total.
local function price_locks(pricing, groups, total)
  local locks = nil
  for tier, count, base in string.gmatch(groups, '([%x%-]+):(%d+):(%-?%d+)') do
    local rule = pricing[tier]
    if rule then
      local sold = 0
      for k = 1, #rule.r, 2 do
        sold = sold + redis.call('BITCOUNT', SOLD, rule.r[k], rule.r[k + 1], 'BIT')
      end
      local price = tier_price(rule, sold)
      total = total + (price - tonumber(base)) * tonumber(count)
      locks = locks or {}
      locks[tier] = {price, sold, rule.n}
    end
  end
  return locks, total
end
