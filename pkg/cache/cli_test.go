package cache_test

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/pkg/cache"
)

// redisCLI runs the real redis-cli against srv with args and returns its
// output. The test fails, saying what to install, when redis-cli is missing.
func redisCLI(tb testing.TB, srv *cache.Server, stdin string, args ...string) string {
	tb.Helper()
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatalf("redis-cli not found (%v): install it with `apt-get install -y redis-tools`", err)
	}
	host, port, _ := net.SplitHostPort(srv.Addr())
	cmd := exec.Command(path, append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRedisCLI(t *testing.T) {
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode)
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"PING"}, "PONG\n"},
			{[]string{"SET", "greeting", "hello world", "EX", "100"}, "OK\n"},
			{[]string{"GET", "greeting"}, "hello world\n"},
			{[]string{"TTL", "greeting"}, "100\n"},
			{[]string{"INCRBY", "n", "5"}, "5\n"},
			{[]string{"MGET", "greeting", "nope", "n"}, "hello world\n\n5\n"},
			{[]string{"DBSIZE"}, "2\n"},
			{[]string{"NOSUCH"}, "ERR unknown command 'NOSUCH', with args beginning with: \n\n"}, // as Redis prints it
			{[]string{"DEL", "n"}, "1\n"},
		}
		for _, tt := range tests {
			if got := redisCLI(t, srv, "", tt.args...); got != tt.want {
				t.Errorf("redis-cli %s = %q, want %q", strings.Join(tt.args, " "), got, tt.want)
			}
		}
		// Commands on standard input, as scripts feed redis-cli.
		if got, want := redisCLI(t, srv, "SET a 1\nINCR a\nGET a\n"), "OK\n2\n2\n"; got != want {
			t.Errorf("redis-cli with commands on stdin = %q, want %q", got, want)
		}
		info := redisCLI(t, srv, "", "INFO", "keyspace")
		if !strings.Contains(info, "db0:keys=2,expires=1") {
			t.Errorf("redis-cli INFO keyspace = %q, want db0:keys=2,expires=1", info)
		}
		if got := redisCLI(t, srv, "", "COMMAND", "COUNT"); got == "0\n" || strings.Contains(got, "ERR") {
			t.Errorf("redis-cli COMMAND COUNT = %q", got)
		}
		// --pipe sends raw protocol and counts the replies.
		out := redisCLI(t, srv, "SET p1 a\r\nSET p2 b\r\nGET p1\r\n", "--pipe")
		if !strings.Contains(out, "errors: 0, replies: 3") {
			t.Errorf("redis-cli --pipe = %q, want 0 errors and 3 replies", out)
		}

		secured := startServer(t, mode, func(c *cache.Config) { c.Password = "pw" })
		if got := redisCLI(t, secured, "", "--no-auth-warning", "-a", "pw", "PING"); got != "PONG\n" {
			t.Errorf("redis-cli -a pw PING = %q, want PONG", got)
		}
		if got := redisCLI(t, secured, "", "PING"); !strings.Contains(got, "NOAUTH") {
			t.Errorf("redis-cli PING without password = %q, want NOAUTH", got)
		}
	})
}
