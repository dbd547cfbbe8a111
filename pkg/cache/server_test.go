package cache_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/cache"
)

// startServer starts a cache on a free loopback port, with cfg changed by
// edits, and closes it when the test ends.
func startServer(tb testing.TB, edits ...func(*cache.Config)) *cache.Server {
	tb.Helper()
	return startServerWith(tb, cache.Deps{}, edits...)
}

// startServerWith is startServer with deps.
func startServerWith(tb testing.TB, deps cache.Deps, edits ...func(*cache.Config)) *cache.Server {
	tb.Helper()
	cfg := cache.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.ExpireInterval = 10 * time.Millisecond
	for _, edit := range edits {
		if edit != nil {
			edit(&cfg)
		}
	}
	srv, err := cache.New(cfg, deps)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := srv.Open(); err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	if !srv.Ready() {
		tb.Fatalf("Ready() = false after Open")
	}
	return srv
}

// eachTransport runs body once per connection transport: a goroutine per
// connection, and (on Linux) two epoll event loops, busy-polling (the
// default) and sleeping as soon as nothing is ready. body passes mode to
// startServer.
func eachTransport(t *testing.T, body func(t *testing.T, mode func(*cache.Config))) {
	t.Run("goroutines", func(t *testing.T) {
		body(t, func(c *cache.Config) { c.EventLoops = 0 })
	})
	if runtime.GOOS == "linux" {
		t.Run("eventloops", func(t *testing.T) {
			body(t, func(c *cache.Config) { c.EventLoops = 2 })
		})
		t.Run("eventloops-nopoll", func(t *testing.T) {
			body(t, func(c *cache.Config) { c.EventLoops, c.BusyPoll = 2, 0 })
		})
	}
}

// newClient returns a go-redis client of srv, closed when the test ends.
func newClient(tb testing.TB, srv *cache.Server, password string) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr:        srv.Addr(),
		Password:    password,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: -1,
	})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// check compares a go-redis command's result (or error text) with want.
func check(tb testing.TB, what string, cmd interface {
	Err() error
	String() string
}, want any) {
	tb.Helper()
	var got any
	switch c := cmd.(type) {
	case *redis.StringCmd:
		got = c.Val()
	case *redis.IntCmd:
		got = c.Val()
	case *redis.StatusCmd:
		got = c.Val()
	case *redis.BoolCmd:
		got = c.Val()
	case *redis.DurationCmd:
		got = c.Val()
	case *redis.SliceCmd:
		got = fmt.Sprint(c.Val())
	case *redis.Cmd:
		got = c.Val()
	}
	if werr, ok := want.(error); ok {
		if cmd.Err() == nil || cmd.Err().Error() != werr.Error() {
			tb.Errorf("%s: error %v, want %v", what, cmd.Err(), werr)
		}
		return
	}
	if err := cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
		tb.Errorf("%s: error %v, want %v", what, err, want)
		return
	}
	if got != want {
		tb.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestCommands(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode)
		rdb := newClient(t, srv, "")
		ctx := ctxT(t)

		check(t, "PING", rdb.Ping(ctx), "PONG")
		check(t, "ECHO", rdb.Echo(ctx, "hello"), "hello")
		check(t, "GET missing", rdb.Get(ctx, "k"), "")
		if err := rdb.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("GET missing error = %v, want redis.Nil", err)
		}
		check(t, "SET", rdb.Set(ctx, "k", "v1", 0), "OK")
		check(t, "GET", rdb.Get(ctx, "k"), "v1")
		check(t, "SET NX existing", rdb.SetNX(ctx, "k", "v2", 0), false)
		check(t, "SET NX new", rdb.SetNX(ctx, "nx", "v", 0), true)
		check(t, "SET XX existing", rdb.SetXX(ctx, "k", "v2", 0), true)
		check(t, "SET XX missing", rdb.SetXX(ctx, "xx", "v", 0), false)
		check(t, "SET GET", rdb.SetArgs(ctx, "k", "v3", redis.SetArgs{Get: true}), "v2")
		check(t, "SET EX", rdb.Set(ctx, "ex", "v", 100*time.Second), "OK")
		check(t, "TTL", rdb.TTL(ctx, "ex"), 100*time.Second)
		check(t, "SET KEEPTTL", rdb.SetArgs(ctx, "ex", "w", redis.SetArgs{KeepTTL: true}), "OK")
		check(t, "TTL after KEEPTTL", rdb.TTL(ctx, "ex"), 100*time.Second)
		check(t, "SET PX", rdb.Set(ctx, "px", "v", 5*time.Second), "OK")
		if d := rdb.PTTL(ctx, "px").Val(); d <= 4*time.Second || d > 5*time.Second {
			t.Errorf("PTTL after SET PX 5000 = %v, want in (4s, 5s]", d)
		}
		check(t, "SET EXAT", rdb.SetArgs(ctx, "exat", "v", redis.SetArgs{ExpireAt: time.Now().Add(time.Hour)}), "OK")
		if d := rdb.TTL(ctx, "exat").Val(); d < 3590*time.Second || d > time.Hour {
			t.Errorf("TTL after EXAT = %v, want about 1h", d)
		}
		check(t, "SETEX", rdb.SetEx(ctx, "setex", "v", 10*time.Second), "OK")
		check(t, "TTL setex", rdb.TTL(ctx, "setex"), 10*time.Second)
		check(t, "TTL no expiry", rdb.TTL(ctx, "k"), time.Duration(-1))
		check(t, "TTL missing", rdb.TTL(ctx, "missing"), time.Duration(-2))
		check(t, "PTTL missing", rdb.PTTL(ctx, "missing"), time.Duration(-2))

		check(t, "GETEX EX", rdb.GetEx(ctx, "k", 50*time.Second), "v3")
		check(t, "TTL after GETEX", rdb.TTL(ctx, "k"), 50*time.Second)
		check(t, "GETEX PERSIST", rdb.Do(ctx, "GETEX", "k", "PERSIST"), "v3")
		check(t, "TTL after PERSIST", rdb.TTL(ctx, "k"), time.Duration(-1))
		check(t, "GETEX missing", rdb.GetEx(ctx, "missing", time.Second), "")

		check(t, "EXPIRE", rdb.Expire(ctx, "k", 30*time.Second), true)
		check(t, "TTL after EXPIRE", rdb.TTL(ctx, "k"), 30*time.Second)
		check(t, "EXPIRE missing", rdb.Expire(ctx, "missing", time.Second), false)
		check(t, "EXPIRE NX with ttl", rdb.ExpireNX(ctx, "k", time.Hour), false)
		check(t, "EXPIRE GT", rdb.ExpireGT(ctx, "k", time.Hour), true)
		check(t, "EXPIRE LT larger", rdb.ExpireLT(ctx, "k", 2*time.Hour), false)
		check(t, "PEXPIRE", rdb.PExpire(ctx, "k", 1500*time.Millisecond), true)
		if d := rdb.PTTL(ctx, "k").Val(); d <= time.Second || d > 1500*time.Millisecond {
			t.Errorf("PTTL after PEXPIRE 1500 = %v", d)
		}
		check(t, "PERSIST", rdb.Persist(ctx, "k"), true)
		check(t, "EXPIRE 0 deletes", rdb.Expire(ctx, "nx", 0), true)
		check(t, "EXISTS after EXPIRE 0", rdb.Exists(ctx, "nx"), int64(0))

		check(t, "INCR new", rdb.Incr(ctx, "n"), int64(1))
		check(t, "INCRBY", rdb.IncrBy(ctx, "n", 41), int64(42))
		check(t, "DECR", rdb.Decr(ctx, "n"), int64(41))
		check(t, "DECRBY", rdb.DecrBy(ctx, "n", 50), int64(-9))
		check(t, "GET counter", rdb.Get(ctx, "n"), "-9")
		check(t, "INCR not integer", rdb.Incr(ctx, "k"), errors.New("ERR value is not an integer or out of range"))
		rdb.Set(ctx, "max", "9223372036854775807", 0)
		check(t, "INCR overflow", rdb.Incr(ctx, "max"), errors.New("ERR increment or decrement would overflow"))
		rdb.Set(ctx, "cnt", "1", time.Minute)
		rdb.Incr(ctx, "cnt")
		check(t, "INCR keeps TTL", rdb.TTL(ctx, "cnt"), time.Minute)

		check(t, "MSET", rdb.MSet(ctx, "a", "1", "b", "2", "c", "3"), "OK")
		check(t, "MGET", rdb.MGet(ctx, "a", "missing", "c"), "[1 <nil> 3]")
		check(t, "MSET odd", rdb.Do(ctx, "MSET", "a", "1", "b"), errors.New("ERR wrong number of arguments for 'mset' command"))
		check(t, "EXISTS", rdb.Exists(ctx, "a", "b", "missing", "a"), int64(3))
		check(t, "DEL", rdb.Del(ctx, "a", "b", "missing"), int64(2))
		check(t, "UNLINK", rdb.Unlink(ctx, "c"), int64(1))
		check(t, "GETDEL", rdb.GetDel(ctx, "n"), "-9")
		check(t, "STRLEN", rdb.StrLen(ctx, "max"), int64(19))
		check(t, "TYPE", rdb.Type(ctx, "max"), "string")
		check(t, "TYPE missing", rdb.Type(ctx, "missing"), "none")

		keys := rdb.DBSize(ctx).Val()
		if keys < 5 {
			t.Errorf("DBSIZE = %d, want at least 5", keys)
		}
		check(t, "SELECT 0", rdb.Do(ctx, "SELECT", "0"), "OK")
		check(t, "SELECT 1", rdb.Do(ctx, "SELECT", "1"), errors.New("ERR DB index is out of range"))
		check(t, "CLIENT SETNAME", rdb.Do(ctx, "CLIENT", "SETNAME", "tester"), "OK")
		check(t, "CLIENT SETINFO", rdb.Do(ctx, "CLIENT", "SETINFO", "lib-name", "x"), "OK")
		check(t, "HELLO", rdb.Do(ctx, "HELLO", "3"), errors.New("NOPROTO unsupported protocol version"))
		check(t, "unknown", rdb.Do(ctx, "NOSUCH", "x"), errors.New("ERR unknown command 'NOSUCH', with args beginning with: 'x' "))
		check(t, "arity", rdb.Do(ctx, "GET"), errors.New("ERR wrong number of arguments for 'get' command"))
		check(t, "SET bad option", rdb.Do(ctx, "SET", "k", "v", "BOGUS"), errors.New("ERR syntax error"))
		check(t, "SET EX 0", rdb.Do(ctx, "SET", "k", "v", "EX", "0"), errors.New("ERR invalid expire time in 'set' command"))
		check(t, "SET EX text", rdb.Do(ctx, "SET", "k", "v", "EX", "soon"), errors.New("ERR value is not an integer or out of range"))
		check(t, "SET NX XX", rdb.Do(ctx, "SET", "k", "v", "NX", "XX"), errors.New("ERR syntax error"))

		if n := rdb.Do(ctx, "COMMAND", "COUNT").Val().(int64); n < 30 {
			t.Errorf("COMMAND COUNT = %d, want at least 30", n)
		}
		docs, err := rdb.Do(ctx, "COMMAND", "DOCS", "get").Slice()
		if err != nil || len(docs) != 2 || docs[0] != "get" {
			t.Errorf("COMMAND DOCS get = %v, %v; want [get {...}]", docs, err)
		}
		info, err := rdb.Do(ctx, "COMMAND", "INFO", "set").Slice()
		if err != nil || len(info) != 1 {
			t.Fatalf("COMMAND INFO set = %v, %v", info, err)
		}
		if entry := info[0].([]any); entry[0] != "set" || entry[1] != int64(-3) {
			t.Errorf("COMMAND INFO set = %v, want name set, arity -3", entry)
		}

		if got := rdb.ConfigGet(ctx, "max*").Val(); got["maxmemory"] != "67108864" || got["maxclients"] != "10000" {
			t.Errorf("CONFIG GET max* = %v, want maxmemory 67108864 and maxclients 10000", got)
		}
		if got := rdb.ConfigGet(ctx, "save").Val(); len(got) != 1 || got["save"] != "" {
			t.Errorf("CONFIG GET save = %v, want save \"\"", got)
		}
		check(t, "CONFIG SET", rdb.ConfigSet(ctx, "maxmemory", "1"), errors.New("ERR CONFIG SET is not supported: settings are flags, fixed at start"))

		text := rdb.Info(ctx).Val()
		for _, want := range []string{"# Server\r\n", "redis_version:", "# Memory\r\n", "used_memory:", "maxmemory:67108864\r\n",
			"# Stats\r\n", "keyspace_hits:", "keyspace_misses:", "evicted_keys:0\r\n", "# Keyspace\r\n", "db0:keys="} {
			if !strings.Contains(text, want) {
				t.Errorf("INFO lacks %q:\n%s", want, text)
			}
		}
		if got := rdb.Info(ctx, "stats").Val(); !strings.HasPrefix(got, "# Stats\r\n") || strings.Contains(got, "# Server") {
			t.Errorf("INFO stats = %q, want the Stats section alone", got)
		}

		check(t, "FLUSHALL", rdb.FlushAll(ctx), "OK")
		check(t, "DBSIZE after FLUSHALL", rdb.DBSize(ctx), int64(0))

		st := srv.Status().(cache.Status)
		if st.Hits == 0 || st.Misses == 0 || st.Commands == 0 || st.Connections < 1 {
			t.Errorf("Status() = %+v, want hits, misses, commands and a connection", st)
		}
	})
}

func TestPipelining(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode)
		rdb := newClient(t, srv, "")
		ctx := ctxT(t)
		const n = 2000
		pipe := rdb.Pipeline()
		for i := range n {
			pipe.Set(ctx, fmt.Sprint("key:", i), fmt.Sprint("value:", i), 0)
		}
		gets := make([]*redis.StringCmd, n)
		for i := range n {
			gets[i] = pipe.Get(ctx, fmt.Sprint("key:", i))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("pipeline Exec: %v", err)
		}
		for i, g := range gets {
			if got, want := g.Val(), fmt.Sprint("value:", i); got != want {
				t.Fatalf("pipelined GET key:%d = %q, want %q", i, got, want)
			}
		}

		// One write holding many requests, inline and multibulk mixed, split
		// at an awkward place, answered in order.
		c := dial(t, srv)
		req := "PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2\r\n42\r\n*2\r\n$4\r\nINCR\r\n$1\r\nx\r\nGET x\r\n*2\r\n$4\r\nECHO\r\n$3\r\na\nb\r\n"
		for _, part := range []string{req[:17], req[17:]} {
			if _, err := c.Write([]byte(part)); err != nil {
				t.Fatalf("write: %v", err)
			}
			time.Sleep(time.Millisecond) // let the halves arrive apart; correctness does not depend on it
		}
		want := "+PONG\r\n+OK\r\n:43\r\n$2\r\n43\r\n$3\r\na\nb\r\n"
		if got := readN(t, c, len(want)); got != want {
			t.Fatalf("pipelined replies = %q, want %q", got, want)
		}
	})
}

func TestTTLExpiry(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode)
		rdb := newClient(t, srv, "")
		ctx := ctxT(t)
		rdb.Set(ctx, "short", "v", 30*time.Millisecond)
		rdb.Set(ctx, "long", "v", time.Hour)
		testwait.Until(t, 2*time.Second, "short to expire", func() bool {
			return errors.Is(rdb.Get(ctx, "short").Err(), redis.Nil)
		})
		check(t, "GET long", rdb.Get(ctx, "long"), "v")

		// Keys nobody reads again are reclaimed by the active expire cycle.
		pipe := rdb.Pipeline()
		for i := range 1000 {
			pipe.Set(ctx, fmt.Sprint("tmp:", i), "some value", 20*time.Millisecond)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("pipeline: %v", err)
		}
		testwait.Until(t, 5*time.Second, "expired keys to be reclaimed", func() bool {
			return rdb.DBSize(ctx).Val() == 1
		})
		st := srv.Status().(cache.Status)
		if st.Expired < 1000 {
			t.Errorf("Status().Expired = %d, want at least 1000", st.Expired)
		}
		if st.Keys != 1 || st.KeysWithTTL != 1 {
			t.Errorf("Status() keys = %d, with TTL %d; want 1, 1", st.Keys, st.KeysWithTTL)
		}
	})
}

func TestEvictionUnderByteBudget(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		const budget = 256 << 10
		srv := startServer(t, mode, func(c *cache.Config) {
			c.MaxBytes = budget
			c.Shards = 1 // one exact LRU, so which keys survive is predictable
			c.MaxValueBytes = 64 << 10
		})
		rdb := newClient(t, srv, "")
		ctx := ctxT(t)
		value := strings.Repeat("x", 1024)
		const n = 1000 // about 1 MiB written into 256 KiB
		for i := range n {
			if err := rdb.Set(ctx, fmt.Sprint("k", i), value, 0).Err(); err != nil {
				t.Fatalf("SET k%d: %v", i, err)
			}
			if i == 10 {
				rdb.Get(ctx, "k0") // k0 is now more recent than k1..k10, but not than what follows
			}
		}
		st := srv.Status().(cache.Status)
		if st.Bytes > budget {
			t.Errorf("Status().Bytes = %d, over the budget %d", st.Bytes, budget)
		}
		if st.Bytes < budget*8/10 {
			t.Errorf("Status().Bytes = %d, want the budget %d nearly used", st.Bytes, budget)
		}
		// Each entry costs its 1024-byte value, its key and some overhead.
		if st.Keys >= budget/1024 || st.Keys < budget/1200 {
			t.Errorf("Status().Keys = %d, want a little under %d", st.Keys, budget/1024)
		}
		if got, want := st.Evictions, uint64(n-st.Keys); got != want {
			t.Errorf("Status().Evictions = %d, want %d", got, want)
		}
		check(t, "GET newest", rdb.Get(ctx, fmt.Sprint("k", n-1)), value)
		check(t, "EXISTS oldest", rdb.Exists(ctx, "k0", "k1"), int64(0))
		if !strings.Contains(rdb.Info(ctx, "stats").Val(), fmt.Sprintf("evicted_keys:%d\r\n", st.Evictions)) {
			t.Errorf("INFO stats does not report evicted_keys:%d", st.Evictions)
		}

		// A value larger than the whole budget is refused, and leaves no stale
		// old value behind.
		big := startServer(t, mode, func(c *cache.Config) { c.MaxBytes, c.Shards, c.MaxValueBytes = 4096, 1, 4096 })
		rb := newClient(t, big, "")
		rb.Set(ctx, "k", "old", 0)
		check(t, "SET over budget", rb.Set(ctx, "k", strings.Repeat("y", 4096), 0),
			errors.New("OOM command not allowed when used memory > 'maxmemory'."))
		check(t, "EXISTS after refused SET", rb.Exists(ctx, "k"), int64(0))
	})
}

func TestAuth(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode, func(c *cache.Config) { c.Password = "s3cret" })
		ctx := ctxT(t)

		anon := newClient(t, srv, "")
		check(t, "GET without AUTH", anon.Get(ctx, "k"), errors.New("NOAUTH Authentication required."))

		wrong := newClient(t, srv, "nope")
		if err := wrong.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Errorf("PING with a wrong password: error %v, want WRONGPASS", err)
		}

		rdb := newClient(t, srv, "s3cret")
		check(t, "SET with AUTH", rdb.Set(ctx, "k", "v", 0), "OK")
		check(t, "GET with AUTH", rdb.Get(ctx, "k"), "v")

		c := dial(t, srv)
		c.Write([]byte("GET k\r\nAUTH default s3cret\r\nGET k\r\n"))
		want := "-NOAUTH Authentication required.\r\n+OK\r\n$1\r\nv\r\n"
		if got := readN(t, c, len(want)); got != want {
			t.Errorf("raw AUTH exchange = %q, want %q", got, want)
		}

		open := startServer(t, mode)
		check(t, "AUTH without a password configured", newClient(t, open, "").Do(ctx, "AUTH", "x"),
			errors.New("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"))
	})
}

// dial opens a raw connection to srv.
func dial(tb testing.TB, srv *cache.Server) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tb.Cleanup(func() { c.Close() })
	return c
}

func readN(tb testing.TB, c net.Conn, n int) string {
	tb.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		tb.Fatalf("read %d bytes: %v (got %q)", n, err, buf)
	}
	return string(buf)
}

// expectErrorAndClose reads one line from c, wants it to start with want,
// then wants the server to hang up.
func expectErrorAndClose(tb testing.TB, c net.Conn, want string) {
	tb.Helper()
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, want) {
		tb.Fatalf("reply %q, %v; want a line starting %q", line, err, want)
	}
	// A reset is a hang-up too: the server closed with our request unread.
	if rest, err := io.ReadAll(r); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(rest) != 0 {
		tb.Fatalf("after the error: %q, %v; want the connection closed", rest, err)
	}
}

func TestMalformedInput(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode, func(c *cache.Config) {
			c.MaxValueBytes = 1 << 10
			c.MaxRequestBytes = 64 << 10
			c.MaxArgs = 100
		})
		tests := []struct {
			name, in, want string
		}{
			{"garbage", "*\x00\xff\xfe garbage\r\n", "-ERR Protocol error: invalid multibulk length"},
			{"huge bulk length", "*2\r\n$3\r\nGET\r\n$99999999999\r\n", "-ERR Protocol error: invalid bulk length"},
			{"bulk over value limit", "*2\r\n$3\r\nGET\r\n$1025\r\n", "-ERR Protocol error: invalid bulk length"},
			{"huge multibulk length", "*2147483648\r\n", "-ERR Protocol error: invalid multibulk length"},
			{"too many args", "*101\r\n", "-ERR Protocol error: invalid multibulk length"},
			{"not a bulk", "*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'"},
			{"endless header", "*1" + strings.Repeat("9", 100), "-ERR Protocol error: invalid multibulk length"},
			{"request over limit", "*100\r\n" + strings.Repeat("$1000\r\n"+strings.Repeat("z", 1000)+"\r\n", 70), "-ERR Protocol error: request larger than"},
			{"endless inline", strings.Repeat("A", 70<<10), "-ERR Protocol error: too big inline request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, srv)
				go c.Write([]byte(tt.in)) // the server may hang up before reading it all
				expectErrorAndClose(t, c, tt.want)
			})
		}

		// An unterminated request, then a hang-up, costs nothing lasting.
		for _, partial := range []string{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc", "*2\r\n$3", "GET k"} {
			c := dial(t, srv)
			c.Write([]byte(partial))
			c.Close()
		}
		// Unknown commands get an error and the connection goes on.
		c := dial(t, srv)
		c.Write([]byte("FOO\r\n*1\r\n$4\r\nPING\r\n"))
		want := "-ERR unknown command 'FOO', with args beginning with: \r\n+PONG\r\n"
		if got := readN(t, c, len(want)); got != want {
			t.Errorf("after unknown command = %q, want %q", got, want)
		}
		testwait.Until(t, 2*time.Second, "aborted connections to be released", func() bool {
			return srv.Status().(cache.Status).Connections == 1
		})
	})
}

func TestCloseClosesConnections(t *testing.T) {
	cfg := cache.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	srv, err := cache.New(cfg, cache.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if srv.Ready() {
		t.Fatalf("Ready() = true before Open")
	}
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	c := dial(t, srv)
	c.Write([]byte("PING\r\n"))
	readN(t, c, len("+PONG\r\n"))
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if srv.Ready() {
		t.Errorf("Ready() = true after Close")
	}
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("read after Close = %d bytes, want the connection closed", n)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("dial after Close succeeded, want refused")
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestMaxClients(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode, func(c *cache.Config) { c.MaxClients = 1 })
		c := dial(t, srv)
		c.Write([]byte("PING\r\n"))
		readN(t, c, len("+PONG\r\n"))
		expectErrorAndClose(t, dial(t, srv), "-ERR max number of clients reached")
	})
}

// TestSlowReaderBackpressure pipelines requests whose replies far exceed the
// socket buffers, and reads them only after sending everything: the server
// must stop, wait for the socket to drain, and resume where it was.
func TestSlowReaderBackpressure(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode)
		ctx := ctxT(t)
		value := strings.Repeat("v", 256<<10)
		if err := newClient(t, srv, "").Set(ctx, "big", value, 0).Err(); err != nil {
			t.Fatalf("SET big: %v", err)
		}
		c := dial(t, srv)
		const n = 64 // 16 MiB of replies
		if _, err := c.Write([]byte(strings.Repeat("GET big\r\n", n) + "PING\r\n")); err != nil {
			t.Fatalf("write: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // let the server fill the socket and block; correctness does not depend on it
		r := bufio.NewReaderSize(c, 1<<20)
		want := fmt.Sprintf("$%d\r\n%s\r\n", len(value), value)
		buf := make([]byte, len(want))
		for i := range n {
			if _, err := io.ReadFull(r, buf); err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
			if string(buf) != want {
				t.Fatalf("reply %d differs from the value (starts %q)", i, buf[:20])
			}
		}
		if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("last reply = %q, %v, want +PONG", line, err)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode, func(c *cache.Config) { c.IdleTimeout = 100 * time.Millisecond })
		c := dial(t, srv)
		c.Write([]byte("PING\r\n"))
		readN(t, c, len("+PONG\r\n"))
		start := time.Now()
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read on an idle connection = %d bytes, want it closed", n)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("idle connection closed after %v, want about 100ms", d)
		}
	})
}

// TestConcurrentClients runs many clients at once over the shards: every
// increment must count, and every client must read back its own writes.
func TestConcurrentClients(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode)
		ctx := ctxT(t)
		const clients, ops = 8, 200
		errs := make(chan error, clients)
		for i := range clients {
			rdb := newClient(t, srv, "")
			go func() {
				for j := range ops {
					if err := rdb.Incr(ctx, "counter").Err(); err != nil {
						errs <- fmt.Errorf("client %d INCR: %w", i, err)
						return
					}
					key, val := fmt.Sprintf("c%d:%d", i, j), fmt.Sprint(j)
					if err := rdb.Set(ctx, key, val, 0).Err(); err != nil {
						errs <- fmt.Errorf("client %d SET: %w", i, err)
						return
					}
					if got, err := rdb.Get(ctx, key).Result(); err != nil || got != val {
						errs <- fmt.Errorf("client %d GET %s = %q, %v, want %q", i, key, got, err, val)
						return
					}
				}
				errs <- nil
			}()
		}
		for range clients {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		check(t, "GET counter", newClient(t, srv, "").Get(ctx, "counter"), fmt.Sprint(clients*ops))
		check(t, "DBSIZE", newClient(t, srv, "").DBSize(ctx), int64(clients*ops+1))
	})
}

func TestQuit(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode)
		c := dial(t, srv)
		// Requests after QUIT in the same batch are not executed.
		c.Write([]byte("SET q 1\r\nQUIT\r\nSET q 2\r\n"))
		want := "+OK\r\n+OK\r\n"
		if got := readN(t, c, len(want)); got != want {
			t.Fatalf("replies = %q, want %q", got, want)
		}
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("after QUIT: %q, %v; want the connection closed", rest, err)
		}
		check(t, "GET q", newClient(t, srv, "").Get(ctxT(t), "q"), "1")
	})
}
