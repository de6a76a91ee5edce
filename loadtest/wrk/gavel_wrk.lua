-- Shared by the scenario scripts: settings from the environment, a slot per wrk thread (bids
-- are partitioned by slot so that no two threads raise the same auction), status counting, and
-- the one machine-readable line that loadtest/run parses from done().
--
-- Environment: GAVEL_FIRST_AUCTION and GAVEL_AUCTIONS (the auctions a script addresses, default
-- 1 and 1000), GAVEL_THREADS (must equal wrk's -t, default 2), GAVEL_AMOUNT_BASE (bids rise from
-- here; each run must start above every bid accepted before, default 100), GAVEL_TOKEN (a bearer
-- token for servers with authentication on; POSTs then carry it), GAVEL_IDEMPOTENCY (1: every
-- bid carries a new Idempotency-Key).
local M = {}

M.first = tonumber(os.getenv("GAVEL_FIRST_AUCTION") or "1")
M.auctions = tonumber(os.getenv("GAVEL_AUCTIONS") or "1000")
M.threads = tonumber(os.getenv("GAVEL_THREADS") or "2")
M.amount_base = tonumber(os.getenv("GAVEL_AMOUNT_BASE") or "100")

M.keyed = os.getenv("GAVEL_IDEMPOTENCY") == "1"

-- A fresh key per request: the run's start time and amount base, the thread's slot and its request
-- counter.
local run_id = os.time() .. "-" .. M.amount_base
function M.key(slot, counter)
  return run_id .. "-" .. slot .. "-" .. counter
end

-- Headers of a JSON POST, with the bearer token when one is given.
M.post_headers = {["Content-Type"] = "application/json"}
local token = os.getenv("GAVEL_TOKEN")
if token and token ~= "" then
  M.post_headers["Authorization"] = "Bearer " .. token
end

-- Per thread state (each wrk thread runs its own copy of the script); done() reads them with
-- thread:get().
n_too_low, n_5xx, n_other = 0, 0, 0

local thread_list = {}

function M.setup(thread)
  thread:set("slot", #thread_list % M.threads)
  table.insert(thread_list, thread)
end

-- An amount with two decimals; %.0f because %d would overflow 32 bits on some Lua builds.
function M.money(units)
  return string.format("%.0f.00", units)
end

-- Only scripts that send bids install this: wrk then hands every response to Lua, which costs
-- throughput, and without bids there is no 409 to tell apart from a real failure.
function M.response(status, headers, body)
  if status < 300 then
    return
  end
  if status == 409 and body and body:find("bid_too_low", 1, true) then
    n_too_low = n_too_low + 1
  elseif status >= 500 then
    n_5xx = n_5xx + 1
  else
    n_other = n_other + 1
  end
end

-- `counting` is true for scripts that installed M.response; the others have only wrk's own count
-- of 4xx/5xx answers, every one of which is an error there.
function M.done(summary, latency, counting)
  local too_low, s5xx, other = 0, 0, 0
  if counting then
    for _, t in ipairs(thread_list) do
      too_low = too_low + (t:get("n_too_low") or 0)
      s5xx = s5xx + (t:get("n_5xx") or 0)
      other = other + (t:get("n_other") or 0)
    end
  else
    other = summary.errors.status
  end
  local e = summary.errors
  local socket = e.connect + e.read + e.write
  io.write(string.format(
    "LOADTEST requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "mean_us=%.1f errors=%d socket=%d timeout=%d s5xx=%d other_non2xx=%d too_low_409=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean,
    socket + e.timeout + s5xx + other, socket, e.timeout, s5xx, other, too_low))
end

return M
