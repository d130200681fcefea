-- wrk script for bench/endpoint.py: POST one fixed body, each request freshly HMAC-signed, optionally paced.
--
-- Environment (read in every Lua state wrk creates):
--   BENCH_BODY_FILE     file holding the request body
--   BENCH_HEADERS_FILE  file of "name: value" lines added to the request
--   BENCH_HMAC_SECRET   when set, every request carries its own x-timestamp (epoch ms with a
--                       per-request fraction, unique) and x-signature (hex HMAC-SHA256 of "{timestamp}.{body}", the
--                       service's default scheme), computed with OpenSSL's libcrypto through
--                       LuaJIT's FFI: the service remembers signatures and answers a repeated one
--                       as a replay, so one signature per run would measure the replay path
--   BENCH_RATE          requests per second for this wrk thread; 0 or unset = as fast as possible
--
-- Both servers of a comparison get the same script, so the per-request signing (one HMAC
-- over the body on wrk's CPU) costs them alike. With BENCH_RATE set, delay() hands out send
-- slots on a fixed schedule (start + k / rate, by the monotonic clock): a late response does
-- not push the schedule back, so the offered rate is constant as long as a connection is
-- free. wrk's timer resolution is 1 ms, so single sends jitter by up to 1 ms while the
-- average rate stays exact. Latency is measured by wrk from the moment a request is
-- written, as usual.

local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
  typedef struct evp_md_st EVP_MD;
  const EVP_MD *EVP_sha256(void);
  unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d,
                      size_t n, unsigned char *md, unsigned int *md_len);
]])
local CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
local ts = ffi.new("bench_timespec")
local function clock_ms(clock)
  ffi.C.clock_gettime(clock, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

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

local secret = os.getenv("BENCH_HMAC_SECRET")
if secret and secret ~= "" then
  local crypto = ffi.load("libcrypto.so.3")
  local sha256 = crypto.EVP_sha256()
  local digest, digest_length = ffi.new("unsigned char[64]"), ffi.new("unsigned int[1]")
  local body = wrk.body
  local sent = 0

  function request()
    -- Unique per request and close to the wall clock: the millisecond, and this run's request
    -- count as its fraction (the service reads fractional timestamps; two requests in one
    -- millisecond, or two runs, never share one).
    sent = sent + 1
    local stamp = string.format("%d.%09d", math.floor(clock_ms(CLOCK_REALTIME)), sent)
    local payload = stamp .. "." .. body
    crypto.HMAC(sha256, secret, #secret, payload, #payload, digest, digest_length)
    local hex = {}
    for i = 0, digest_length[0] - 1 do
      hex[i + 1] = string.format("%02x", digest[i])
    end
    wrk.headers["x-timestamp"] = stamp
    wrk.headers["x-signature"] = table.concat(hex)
    return wrk.format()
  end
end

local rate = tonumber(os.getenv("BENCH_RATE") or "0") or 0
if rate > 0 then
  local function now_ms()
    return clock_ms(CLOCK_MONOTONIC)
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
