-- wrk script: POST one file (argv: path, body, [stop_after_n_requests]) and print a JSON summary
-- line (requests, errors, latency percentiles in microseconds) when done. After
-- stop_after_n_requests it prints WRK_STOPPED: wrk itself sleeps out its whole duration, and
-- bench/load.py interrupts it then. body is "multipart"
-- (the file as part `file`) or "raw" (the file is the body, as image/png).
-- Every multipart request gets its own boundary, as curl, browsers and python-requests send: a
-- parser that does per-boundary work (werkzeug compiles two regular expressions) pays for it here
-- too.
local data = nil
local raw = nil
local stop_after = nil
local count = 0
local sent = 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  data = f:read("*a")
  f:close()
  assert(args[2] == "multipart" or args[2] == "raw", "body: multipart or raw")
  if args[2] == "raw" then
    raw = wrk.format("POST", nil, {["Content-Type"] = "image/png"}, data)
  end
  if args[3] then stop_after = tonumber(args[3]) end
end

function request()
  if raw then return raw end
  sent = sent + 1
  local boundary = string.format("cnnlens%08x%08x", math.random(0, 0x7fffffff), sent)
  local body = "--" .. boundary .. "\r\n" ..
    'Content-Disposition: form-data; name="file"; filename="image.png"\r\n' ..
    "Content-Type: image/png\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
  return wrk.format("POST", nil,
                    {["Content-Type"] = "multipart/form-data; boundary=" .. boundary}, body)
end

function response(status, headers, body)
  count = count + 1
  if stop_after and count == stop_after then
    wrk.thread:stop()
    io.write("WRK_STOPPED\n")
    io.flush()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
