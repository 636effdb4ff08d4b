-- wrk script: POST a valid push request with the default token, a different recipient per request.
-- Usage: wrk -t2 -c50 -d10s -s benchmarks/simulator_push.lua http://127.0.0.1:PORT
-- Set SIM_TOKEN to use another channel's token.
wrk.method = "POST"
wrk.path = "/v2/bot/message/push"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("SIM_TOKEN") or "sim-token-default")

local counter = 0
local thread_tag = 0

function setup(thread)
  thread_tag = thread_tag + 1
  thread:set("tag", thread_tag)
end

function request()
  counter = counter + 1
  local to = string.format("U%08x%024x", tag or 0, counter)
  local body = '{"to":"' .. to .. '","messages":[{"type":"text","text":"Hello from the load test"}],'
    .. '"notificationDisabled":false}'
  return wrk.format(nil, nil, nil, body)
end

local non2xx = 0
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("requests: %d in %.1f s = %.0f req/s\n", summary.requests,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6)))
  io.write(string.format("socket errors: connect %d, read %d, write %d, timeout %d; non-2xx: %d\n",
    errors.connect, errors.read, errors.write, errors.timeout, errors.status))
  io.write(string.format("latency: p50 %.2f ms, p99 %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
