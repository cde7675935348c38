-- wrk script for bench/http.sh: an OFREP request with a random user per request (the
-- context otherwise fixed), so evaluation buckets vary as they do in production.
-- Usage: wrk -s bench/random_user.lua … URL   (TOKEN in the environment)
local token = os.getenv("TOKEN") or ""
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  thread:set("seed", math.random(1, 1000000000))
end

function init(args)
  math.randomseed(seed or os.time())
end

function request()
  local body = string.format(
    '{"context":{"targetingKey":"user-%d","tier":"basic","country":"de","app_version":"3.2.1","age":34}}',
    math.random(0, 999999999))
  return wrk.format(nil, nil, nil, body)
end

-- bench/http.sh fails the run on any non-2xx/3xx answer.
function done(summary, latency, requests)
  -- requests, duration (µs), p50 and p99 (ms), non-2xx/3xx answers, socket errors
  io.write(string.format("wrk-result %d %d %.3f %.3f %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
