-- wrk script: POST the JSON body read from $BENCH_BODY_FILE on every request.
--   BENCH_BODY_FILE=body.json wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:PORT/path
-- $BENCH_HEADERS adds headers ("name: value" lines); with $BENCH_END set, an answer whose last line
-- does not hold it (a stream cut short) is counted, and the count printed as "bad endings: N".
local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
file:close()
-- a row's own headers: a client key's Authorization, Anthropic's anthropic-version
for name, value in (os.getenv("BENCH_HEADERS") or ""):gmatch("([^:\n]+):%s*([^\n]*)") do
  wrk.headers[name] = value
end

local marker = os.getenv("BENCH_END") or ""
if marker ~= "" then
  local threads = {}
  bad = 0

  function setup(thread)
    table.insert(threads, thread)
  end

  function response(status, headers, body)
    if status ~= 200 then return end  -- wrk counts those itself
    local last = #body
    while last > 0 and body:byte(last) <= 32 do last = last - 1 end
    local first = last
    while first > 0 and body:byte(first) ~= 10 do first = first - 1 end
    if not body:find(marker, first + 1, true) then bad = bad + 1 end
  end

  function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do total = total + thread:get("bad") end
    io.write(string.format("bad endings: %d\n", total))
  end
end
