-- GET /health: wrk's static request (no request() hook), so this measures the server, not Lua.
package.path = debug.getinfo(1, "S").source:match("^@(.-)[^/]*$") .. "?.lua;" .. package.path
local g = require("gavel_wrk")

function done(summary, latency, requests)
  g.done(summary, latency, false)
end
