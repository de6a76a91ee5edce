-- POST /api/bids on a hot set of auctions FIRST..FIRST+N-1 (N from GAVEL_AUCTIONS, default 10).
-- Nine bids in ten are far too low (0.50, under any start price the seed uses); the tenth rises,
-- wrk thread t of T bidding only on auctions whose offset is t mod T, so its raises are accepted.
local auctions = tonumber(os.getenv("GAVEL_AUCTIONS") or "10")
local first = tonumber(os.getenv("GAVEL_FIRST_AUCTION") or "1")
local threads = tonumber(os.getenv("GAVEL_THREADS") or "2")
local counter = 0
local raises = 0
local next_thread = 0

function setup(thread)
  thread:set("slot", next_thread % threads)
  next_thread = next_thread + 1
end

function request()
  counter = counter + 1
  local per_thread = math.max(1, math.floor(auctions / threads))
  local offset = (counter % per_thread) * threads + slot
  local amount = "0.50"
  if counter % 10 == 0 then
    raises = raises + 1
    amount = string.format("%d.00", 100 + raises)
  end
  local body = string.format('{"auction_id":%d,"amount":"%s","bidder_id":%d}',
    first + offset, amount, 1000 + slot)
  return wrk.format("POST", "/api/bids", {["Content-Type"] = "application/json"}, body)
end
