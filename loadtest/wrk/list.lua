-- GET /api/bids/{id} (the default page: newest 50) over auctions FIRST..FIRST+N-1, which the
-- runner's seed gave bids to.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local g = require("gavel_wrk")
local counter = 0

setup = g.setup

function request()
  counter = counter + 1
  return wrk.format("GET", "/api/bids/" .. (g.first + (counter * 7919 + (slot or 0)) % g.auctions))
end

function done(summary, latency, requests)
  g.done(summary, latency, false)
end
