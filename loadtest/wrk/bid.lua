-- POST /api/bids spread over auctions FIRST..FIRST+N-1 with rising amounts, so most are accepted.
-- wrk thread t of T (T from GAVEL_THREADS, default 2) bids only on auctions whose offset is t mod T,
-- and its amounts rise by 1.00 a request, so its bids on its own auctions are always high enough.
local auctions = tonumber(os.getenv("GAVEL_AUCTIONS") or "1000")
local first = tonumber(os.getenv("GAVEL_FIRST_AUCTION") or "1")
local threads = tonumber(os.getenv("GAVEL_THREADS") or "2")
local counter = 0
local next_thread = 0

function setup(thread)
  thread:set("slot", next_thread % threads)
  next_thread = next_thread + 1
end

function request()
  counter = counter + 1
  local per_thread = math.floor(auctions / threads)
  local offset = ((counter * 7919) % per_thread) * threads + slot
  local body = string.format('{"auction_id":%d,"amount":"%d.00","bidder_id":%d}',
    first + offset, 100 + counter, 1000 + slot)
  return wrk.format("POST", "/api/bids", {["Content-Type"] = "application/json"}, body)
end
