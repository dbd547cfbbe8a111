package cache_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/internal/testcert"
	"github.com/scalestack/scalestack/pkg/cache"
)

// TestTLS: with TLS the cache speaks RESP inside TLS on every transport
// setting (event loops give way to a goroutine per connection), still
// wants AUTH, and a client that does not speak TLS or does not trust the
// CA gets nothing.
func TestTLS(t *testing.T) {
	ca := testcert.NewCA(t)
	nodeTLS := ca.TLS("127.0.0.1")
	tlsClient := func(t *testing.T, srv *cache.Server, password string, cfg *tls.Config) *redis.Client {
		rdb := redis.NewClient(&redis.Options{
			Addr: srv.Addr(), Password: password, TLSConfig: cfg, Protocol: 2,
			DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
			MaxRetries: -1,
		})
		t.Cleanup(func() { rdb.Close() })
		return rdb
	}
	eachTransport(t, func(t *testing.T, mode func(*cache.Config)) {
		srv := startServer(t, mode, func(c *cache.Config) { c.Password, c.TLS = "s3cret", nodeTLS.Server })
		ctx := ctxT(t)

		rdb := tlsClient(t, srv, "s3cret", nodeTLS.Client)
		check(t, "SET over TLS", rdb.Set(ctx, "k", "v", 0), "OK")
		check(t, "GET over TLS", rdb.Get(ctx, "k"), "v")

		check(t, "GET over TLS without AUTH", tlsClient(t, srv, "", nodeTLS.Client).Get(ctx, "k"),
			errors.New("NOAUTH Authentication required."))

		if err := newClient(t, srv, "s3cret").Ping(ctx).Err(); err == nil {
			t.Errorf("PING in plain TCP to the TLS port succeeded, want an error")
		}
		stranger := &tls.Config{RootCAs: testcert.NewCA(t).Pool()}
		if err := tlsClient(t, srv, "s3cret", stranger).Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("PING trusting another CA: %v, want a certificate error", err)
		}
	})
}
