-- changes: the changes after a cursor, or 'RESET' when that cursor cannot be
-- resumed without a gap (the state was rebuilt under a new epoch, or the
-- stream was trimmed past it).
-- ARGV: epoch, after id, count
local epoch, after, count = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', META) == 0 then
  return {'NOMETA'}
end
if redis.call('HGET', META, 'epoch') ~= epoch then
  return {'RESET'}
end
if after ~= '0-0' and #redis.call('XRANGE', CHANGES, after, after) == 0 then
  return {'RESET'}
end
local entries = redis.call('XRANGE', CHANGES, '(' .. after, '+', 'COUNT', count)
local out = {'OK'}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  local kind, seats = '', ''
  for i = 1, #fields, 2 do
    if fields[i] == 'k' then
      kind = fields[i + 1]
    elseif fields[i] == 's' then
      seats = fields[i + 1]
    end
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = kind
  out[#out + 1] = seats
end
return out
