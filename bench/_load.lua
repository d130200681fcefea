-- wrk script for bench/endpoint.py: POST one fixed body with fixed headers, optionally paced.
--
-- Environment (read in every Lua state wrk creates):
--   BENCH_BODY_FILE     file holding the request body
--   BENCH_HEADERS_FILE  file of "name: value" lines added to the request
--   BENCH_RATE          requests per second for this wrk thread; 0 or unset = as fast as possible
--
-- The request is static, so wrk formats it once per thread and spends no Lua time per request
-- at full speed. With BENCH_RATE set, delay() hands out send slots on a fixed schedule
-- (start + k / rate, by the monotonic clock): a late response does not push the schedule back,
-- so the offered rate is constant as long as a connection is free. wrk's timer resolution is
-- 1 ms, so single sends jitter by up to 1 ms while the average rate stays exact. Latency is
-- measured by wrk from the moment a request is written, as usual.

local function slurp(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

wrk.method = "POST"
wrk.body = slurp(os.getenv("BENCH_BODY_FILE"))
wrk.headers["Content-Type"] = "application/json"
local headers_file = os.getenv("BENCH_HEADERS_FILE")
if headers_file and headers_file ~= "" then
  for line in slurp(headers_file):gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
      wrk.headers[name] = value
    end
  end
end

local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]])
  local CLOCK_MONOTONIC = 1
  local ts = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local next_slot = nil

  function delay()
    local now = now_ms()
    if next_slot == nil then
      next_slot = now
    end
    local slot = next_slot
    next_slot = next_slot + interval
    local wait = slot - now
    if wait <= 0 then
      return 0
    end
    return math.floor(wait + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,'
      .. '"write":%d,"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,'
      .. '"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean
  ))
end
