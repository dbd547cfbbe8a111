package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/events"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/queue/natsserver"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// Buckets of the users service that the tests count writes to.
const (
	badgesBucket  = "accounts.badges"
	appliedBucket = "accounts.events"
)

// env is the badge's whole path in one test: a payments service and a
// users service, each over its own real store (two groups at stage 10),
// and a real NATS server with JetStream between them.
type env struct {
	natsCfg natsserver.ServerConfig
	nats    *natsserver.Server
	conn    *queue.Conn
	stream  *queue.EventStream
	logs    *logRecorder

	payStore, userStore *countingStore
	pay                 *payments.Service
	users               *accounts.Service
	proc                *payments.Simulated
}

func newEnv(t testing.TB, edit func(*queue.EventsConfig)) *env {
	t.Helper()
	e := &env{logs: &logRecorder{}}
	e.natsCfg = natsserver.DefaultServerConfig()
	e.natsCfg.Name, e.natsCfg.ClientPort, e.natsCfg.DataDir, e.natsCfg.Standalone = "nats-1", 0, t.TempDir(), true
	e.startNATS(t)

	cc := queue.DefaultClientConfig()
	cc.Name = "events-test"
	url := e.nats.ClientURL()
	cc.Servers = func() []string { return []string{url} }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := queue.Connect(ctx, cc)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	e.conn = conn
	ec := queue.DefaultEventsConfig()
	if edit != nil {
		edit(&ec)
	}
	if e.stream, err = queue.NewEventStream(conn.JetStream(), ec); err != nil {
		t.Fatalf("NewEventStream: %v", err)
	}

	e.payStore, e.userStore = openStore(t, "payments"), openStore(t, "users")
	e.proc = payments.NewSimulated()
	e.pay = payments.New(e.payStore, e.proc)
	e.users = accounts.New(e.userStore, bcrypt.MinCost)
	return e
}

func (e *env) startNATS(t testing.TB) {
	t.Helper()
	ns, err := natsserver.NewServer(e.natsCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Open(); err != nil {
		t.Fatalf("open NATS: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	e.nats = ns
}

func (e *env) stopNATS(t testing.TB) {
	t.Helper()
	u, err := url.Parse(e.nats.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	// Back on the same port, with the same data: the stream and its
	// consumers survive, as on a restarted node.
	if e.natsCfg.ClientPort, err = strconv.Atoi(u.Port()); err != nil {
		t.Fatal(err)
	}
	if err := e.nats.Close(); err != nil {
		t.Fatalf("stop NATS: %v", err)
	}
}

// publisher starts a publisher of the payments outbox (or of outbox, when
// not nil) and stops it when the test ends.
func (e *env) publisher(t testing.TB, outbox events.Outbox) *events.Publisher {
	t.Helper()
	if outbox == nil {
		outbox = e.pay.Outbox()
	}
	cfg := events.DefaultPublisherConfig()
	cfg.Service = payments.Source
	cfg.RetryMin, cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.Logger = slog.New(e.logs)
	p, err := events.NewPublisher(cfg, outbox, e.stream)
	if err != nil {
		t.Fatalf("NewPublisher: %v", err)
	}
	p.Open()
	t.Cleanup(func() { p.Close() })
	return p
}

// subscriber starts the users service's subscriber to badge events, with
// handle (nil: accounts' own handler), waits until it consumes, and stops
// it when the test ends.
func (e *env) subscriber(t testing.TB, handle events.Handler) *events.Subscriber {
	t.Helper()
	if handle == nil {
		handle = e.users.HandleBadgeGranted
	}
	cfg := events.DefaultSubscriberConfig()
	cfg.Service = "users"
	cfg.RetryBase, cfg.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	cfg.Logger = slog.New(e.logs)
	s, err := events.NewSubscriber(cfg, e.stream, events.Subscription{Type: svc.EventBadgeGranted, Handle: handle})
	if err != nil {
		t.Fatalf("NewSubscriber: %v", err)
	}
	s.Open()
	t.Cleanup(func() { s.Close() })
	select {
	case <-s.Ready():
	case <-time.After(20 * time.Second):
		t.Fatalf("subscriber not consuming after 20s: %+v", s.Status())
	}
	return s
}

// buyBadge signs a user up and buys them the badge; the payment's event
// is in the payments outbox when it returns.
func (e *env) buyBadge(t testing.TB, handle string) (accounts.User, payments.Payment) {
	t.Helper()
	ctx := context.Background()
	u, err := e.users.SignUp(ctx, handle, handle+"@example.com", "long enough")
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}
	p, err := e.pay.BuySupporterBadge(ctx, payments.BadgeRequest{Key: "badge-" + handle, UserID: u.ID,
		Card: payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: time.Now().Year() + 2, CVC: "123"}})
	if err != nil || p.EventID == "" {
		t.Fatalf("BuySupporterBadge = %+v, %v; want succeeded with an event", p, err)
	}
	return u, p
}

// waitBadge waits until u holds the badge of payment p, granted by its
// event.
func (e *env) waitBadge(t testing.TB, u accounts.User, p payments.Payment) {
	t.Helper()
	testwait.RetryUntil(t, 20*time.Second, func() error { // the badge granted through NATS
		b, err := e.users.Badge(context.Background(), u.ID)
		if err != nil {
			return fmt.Errorf("Badge(%s): %w", u.Handle, err)
		}
		if b.EventID != p.EventID || b.PaymentID != p.ID {
			return fmt.Errorf("Badge = %+v, want granted by event %s for payment %s", b, p.EventID, p.ID)
		}
		return nil
	})
}

// waitOutboxEmpty waits until the payments outbox holds nothing.
func (e *env) waitOutboxEmpty(t testing.TB) {
	t.Helper()
	testwait.RetryUntil(t, 20*time.Second, func() error { // the outbox emptied
		evs, err := e.pay.PendingEvents(context.Background(), 0)
		if err != nil || len(evs) != 0 {
			return fmt.Errorf("PendingEvents = %d events, %v", len(evs), err)
		}
		return nil
	})
}

// wantGrants checks that the users service wrote n badges and recorded n
// applied events.
func (e *env) wantGrants(t testing.TB, n int64) {
	t.Helper()
	if got := e.userStore.puts(badgesBucket); got != n {
		t.Errorf("badges written = %d, want %d", got, n)
	}
	if got := e.userStore.puts(appliedBucket); got != n {
		t.Errorf("applied event ids recorded = %d, want %d", got, n)
	}
}

// streamIDs returns the event id of every message of the stream, in order.
func (e *env) streamIDs(t testing.TB) []string {
	t.Helper()
	var ids []string
	testwait.RetryUntil(t, 10*time.Second, func() error { // the stream read
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ids = nil
		s, err := e.conn.JetStream().Stream(ctx, e.stream.Config().Stream)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			ids = append(ids, m.Header.Get(queue.HeaderEventID))
		}
		return nil
	})
	return ids
}

// countingStore is a real store that counts the committed puts per bucket.
type countingStore struct {
	store.Store
	mu   sync.Mutex
	byBk map[string]int64
}

func openStore(t testing.TB, name string) *countingStore {
	t.Helper()
	db, err := boltdb.Open(filepath.Join(t.TempDir(), name+".db"), boltdb.Options{})
	if err != nil {
		t.Fatalf("boltdb.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return &countingStore{Store: db, byBk: map[string]int64{}}
}

func (s *countingStore) Txn(ctx context.Context, ops ...store.Op) (uint64, error) {
	lsn, err := s.Store.Txn(ctx, ops...)
	if err == nil {
		s.mu.Lock()
		for _, op := range ops {
			if op.Kind == store.OpPut {
				s.byBk[op.Bucket]++
			}
		}
		s.mu.Unlock()
	}
	return lsn, err
}

func (s *countingStore) puts(bucket string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byBk[bucket]
}

// logRecorder is a slog handler that keeps the messages logged at warn and
// above, and at info, for the tests that count state changes.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
	n    atomic.Int64
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelInfo {
		return nil
	}
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	l.n.Add(1)
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// count returns how many messages containing s were logged.
func (l *logRecorder) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

// waitHandled waits until sub's one subscription has acked n events
// (after its handler returned: every write of the handler is counted).
func waitHandled(t testing.TB, sub *events.Subscriber, n int64) {
	t.Helper()
	testwait.RetryUntil(t, 20*time.Second, func() error { // the handler's return and ack
		if st := sub.Status().Subscriptions[0]; st.Handled != n {
			return fmt.Errorf("subscription status %+v, want %d handled", st, n)
		}
		return nil
	})
}
