-- POST /api/bids spread over auctions 1..GAVEL_AUCTIONS with rising amounts, so most are accepted.
-- Each wrk thread counts its own requests; amounts grow by one unit per request, which is above any
-- min_increment the seed script uses (0.01).
local auctions = tonumber(os.getenv("GAVEL_AUCTIONS") or "1000")
local first = tonumber(os.getenv("GAVEL_FIRST_AUCTION") or "1")
local counter = 0
local thread_base = 0

function setup(thread)
  thread_base = thread_base + 1
  thread:set("base", thread_base)
end

function request()
  counter = counter + 1
  local auction = first + ((counter * 7919 + base * 104729) % auctions)
  local amount = 100 + counter + base * 0.01
  local body = string.format('{"auction_id":%d,"amount":"%.2f","bidder_id":%d}', auction, amount, 1000 + base)
  return wrk.format("POST", "/api/bids", {["Content-Type"] = "application/json"}, body)
end
