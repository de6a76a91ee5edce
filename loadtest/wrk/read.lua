-- GET /api/auctions/{id} over auctions FIRST..FIRST+N-1.
local auctions = tonumber(os.getenv("GAVEL_AUCTIONS") or "1000")
local first = tonumber(os.getenv("GAVEL_FIRST_AUCTION") or "1")
local counter = 0

function request()
  counter = counter + 1
  return wrk.format("GET", "/api/auctions/" .. (first + (counter * 7919) % auctions))
end
