-- Nine GET /api/auctions/{id} to one POST /api/bids, over auctions FIRST..FIRST+N-1. The bids
-- follow bid.lua (per-thread partition, amounts rising from GAVEL_AMOUNT_BASE), so they are
-- accepted; the reads land on the same auctions, which the bids keep changing. Every answer must
-- be a 2xx, so wrk's own count of the others is the error count: no Lua callback per response,
-- which would make wrk, not the server, the limit of this scenario.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local g = require("gavel_wrk")
local counter = 0
local bids = 0

setup = g.setup

function request()
  counter = counter + 1
  if counter % 10 ~= 0 then
    return wrk.format("GET", "/api/auctions/" .. (g.first + (counter * 7919 + slot) % g.auctions))
  end
  bids = bids + 1
  local per_thread = math.max(1, math.floor(g.auctions / g.threads))
  local offset = ((bids * 7919) % per_thread) * g.threads + slot
  local body = string.format('{"auction_id":%d,"amount":"%s","bidder_id":%d}',
    g.first + offset, g.money(g.amount_base + bids), 1000 + slot)
  return wrk.format("POST", "/api/bids", g.post_headers, body)
end

function done(summary, latency, requests)
  g.done(summary, latency, false)
end
