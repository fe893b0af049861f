-- wrk script: POST the JSON body read from $BENCH_BODY_FILE on every request.
--   BENCH_BODY_FILE=body.json wrk -t1 -c64 -d5s -s bench/post.lua http://127.0.0.1:PORT/path
local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
local authorization = os.getenv("BENCH_AUTHORIZATION")  -- a client key, for rows that send one
if authorization then wrk.headers["Authorization"] = authorization end
file:close()
