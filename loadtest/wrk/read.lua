-- GET /api/auctions/{id} over auctions FIRST..FIRST+N-1, visited in a scattered order (stride
-- 7919, a prime) so consecutive requests do not touch neighbouring rows.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local g = require("gavel_wrk")
local counter = 0

setup = g.setup

function request()
  counter = counter + 1
  return wrk.format("GET", "/api/auctions/" .. (g.first + (counter * 7919 + (slot or 0)) % g.auctions))
end

function done(summary, latency, requests)
  g.done(summary, latency, false)
end
