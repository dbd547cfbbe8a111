-- 90/10 hit/miss mix for wrk: nine requests in ten ask for /1k (a hit once
-- stored), one in ten for /1k with a query string never asked before (a
-- miss that each proxy fetches and stores). The prefix, given after "--",
-- keeps misses unique across runs against the same proxy.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = args[1] or "run"
  n = 0
end
function request()
  n = n + 1
  if n % 10 == 0 then
    return wrk.format("GET", "/1k?miss=" .. prefix .. "-" .. tid .. "-" .. n)
  end
  return wrk.format("GET", "/1k")
end
