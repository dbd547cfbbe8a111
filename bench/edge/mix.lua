-- 90/10 hit/miss mix for wrk: nine requests in ten ask for /1k (a hit once
-- stored), one in ten for /1k with a query string never asked before (a
-- miss that each proxy fetches and stores). The prefix, given after "--",
-- keeps misses unique across runs against the same proxy; a second
-- argument changes the share of misses (1: every request is a miss).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = args[1] or "run"
  every = tonumber(args[2] or "10")
  n = 0
end
function request()
  n = n + 1
  if n % every == 0 then
    return wrk.format("GET", "/1k?miss=" .. prefix .. "-" .. tid .. "-" .. n)
  end
  return wrk.format("GET", "/1k")
end
