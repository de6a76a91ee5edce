-- POST /api/bids spread over auctions FIRST..FIRST+N-1 with rising amounts, so most are accepted.
-- wrk thread t of T (T from GAVEL_THREADS, default 2) bids only on auctions whose offset is t mod T,
-- and its amounts rise by 1.00 a request from GAVEL_AMOUNT_BASE, so its bids on its own auctions
-- are always high enough. A 409 bid_too_low is counted apart, not as an error.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local g = require("gavel_wrk")
local counter = 0

setup = g.setup
response = g.response

function request()
  counter = counter + 1
  local per_thread = math.max(1, math.floor(g.auctions / g.threads))
  local offset = ((counter * 7919) % per_thread) * g.threads + slot
  local body = string.format('{"auction_id":%d,"amount":"%s","bidder_id":%d}',
    g.first + offset, g.money(g.amount_base + counter), 1000 + slot)
  local headers = g.post_headers
  if g.keyed then
    headers = {}
    for k, v in pairs(g.post_headers) do headers[k] = v end
    headers["Idempotency-Key"] = g.key(slot, counter)
  end
  return wrk.format("POST", "/api/bids", headers, body)
end

function done(summary, latency, requests)
  g.done(summary, latency, true)
end
