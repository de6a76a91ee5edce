-- POST /api/bids on a hot set of auctions FIRST..FIRST+N-1 (N from GAVEL_AUCTIONS, default 10).
-- Nine bids in ten are far too low (0.50, under any start price the seed uses); the tenth rises
-- from GAVEL_AMOUNT_BASE, wrk thread t of T bidding only on auctions whose offset is t mod T, so
-- its raises are accepted. The raises walk over the thread's auctions, so every hot auction moves.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local g = require("gavel_wrk")
local counter = 0
local raises = 0

setup = g.setup
response = g.response

function request()
  counter = counter + 1
  local per_thread = math.max(1, math.floor(g.auctions / g.threads))
  local offset = (counter % per_thread) * g.threads + slot
  local amount = "0.50"
  if counter % 10 == 0 then
    raises = raises + 1
    offset = (raises % per_thread) * g.threads + slot
    amount = g.money(g.amount_base + raises)
  end
  local body = string.format('{"auction_id":%d,"amount":"%s","bidder_id":%d}',
    g.first + offset, amount, 1000 + slot)
  return wrk.format("POST", "/api/bids", g.post_headers, body)
end

function done(summary, latency, requests)
  g.done(summary, latency, true)
end
