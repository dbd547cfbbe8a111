package events_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/events"
	"github.com/scalestack/scalestack/pkg/app/payments"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// The test binary doubles as a payments service process that the test
// SIGKILLs between JetStream's acknowledgement of its event and the
// removal of the event from its outbox: a crash an in-process Close
// cannot imitate. The parent passes the store's path, the NATS URL and
// the payer in the environment and reads the child's progress from its
// stdout.
const (
	childStoreEnv = "EVENTS_TEST_CHILD_STORE"
	childNATSEnv  = "EVENTS_TEST_CHILD_NATS"
	childUserEnv  = "EVENTS_TEST_CHILD_USER"
)

func TestMain(m *testing.M) {
	if os.Getenv(childStoreEnv) != "" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

// runChild buys the badge with a publisher that stops for good once
// JetStream has acknowledged the event, and prints "committed <event id>"
// and "published <event id>". It exits when its stdin closes (the parent
// died) if it was not killed before.
func runChild() {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "child:", err); os.Exit(2) }
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(gone) }()
	db, err := boltdb.Open(os.Getenv(childStoreEnv), boltdb.Options{})
	if err != nil {
		fail(err)
	}
	cc := queue.DefaultClientConfig()
	cc.Name = "payments-child"
	url := os.Getenv(childNATSEnv)
	cc.Servers = func() []string { return []string{url} }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := queue.Connect(ctx, cc)
	if err != nil {
		fail(err)
	}
	stream, err := queue.NewEventStream(conn.JetStream(), queue.DefaultEventsConfig())
	if err != nil {
		fail(err)
	}
	pay := payments.New(db, payments.NewSimulated())
	cfg := events.DefaultPublisherConfig()
	cfg.Service = payments.Source
	pub, err := events.NewPublisher(cfg, pay.Outbox(), stopAfterPublish{Bus: stream, gone: gone})
	if err != nil {
		fail(err)
	}
	pay.EventsCommitted = pub.Nudge
	p, err := pay.BuySupporterBadge(ctx, payments.BadgeRequest{Key: "badge", UserID: os.Getenv(childUserEnv),
		Card: payments.Card{Number: payments.CardVisa, ExpMonth: 12, ExpYear: time.Now().Year() + 2, CVC: "123"}})
	if err != nil {
		fail(err)
	}
	fmt.Printf("committed %s\n", p.EventID)
	pub.Open()
	<-gone
	os.Exit(1)
}

// stopAfterPublish publishes, says so, and never returns: the publisher
// never gets to remove the event.
type stopAfterPublish struct {
	events.Bus
	gone chan struct{}
}

func (b stopAfterPublish) Publish(ctx context.Context, typ, id string, body []byte) (bool, error) {
	dup, err := b.Bus.Publish(ctx, typ, id, body)
	if err != nil {
		return dup, err
	}
	fmt.Printf("published %s\n", id)
	<-b.gone
	os.Exit(1)
	return dup, nil
}

// (a), with a real crash: the payments process is SIGKILLed after
// JetStream acknowledged its event and before the event left its outbox.
// A payments process started afresh over the same store publishes the
// event again; JetStream drops the duplicate, and the badge is granted
// once.
func TestPaymentsProcessKilledBeforeRemove(t *testing.T) {
	e := newEnv(t, nil)
	sub := e.subscriber(t, nil)
	u, err := e.users.SignUp(context.Background(), "ada", "ada@example.com", "long enough")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "payments.db")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childStoreEnv+"="+path, childNATSEnv+"="+e.nats.ClientURL(), childUserEnv+"="+u.ID)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // held open: the child exits when it closes
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var lines []string
	sc := bufio.NewScanner(out)
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 {
		t.Fatalf("child said %q before it exited (%v), want committed and published", lines, sc.Err())
	}
	eventID, _ := strings.CutPrefix(lines[0], "committed ")
	if lines[1] != "published "+eventID {
		t.Fatalf("child said %q, want committed and published of one event", lines)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// The payments service restarted over its store.
	db, err := boltdb.Open(path, boltdb.Options{})
	if err != nil {
		t.Fatalf("reopen the payments store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	e.pay = payments.New(db, payments.NewSimulated())
	if evs, err := e.pay.PendingEvents(context.Background(), 0); err != nil || len(evs) != 1 || evs[0].ID != eventID || evs[0].UserID != u.ID {
		t.Fatalf("outbox after the kill = %+v, %v; want event %s for %s", evs, err, eventID, u.ID)
	}
	pub := e.publisher(t, nil)
	e.waitOutboxEmpty(t)
	waitHandled(t, sub, 1)
	if b, err := e.users.Badge(context.Background(), u.ID); err != nil || b.EventID != eventID {
		t.Errorf("Badge = %+v, %v; want granted by %s", b, err, eventID)
	}
	if st := pub.Status(); st.Published != 1 || st.Duplicates != 1 {
		t.Errorf("restarted publisher status %+v, want its one publish a duplicate", st)
	}
	if got, want := e.streamIDs(t), []string{eventID}; !slices.Equal(got, want) {
		t.Errorf("stream holds events %q, want %q", got, want)
	}
	e.wantGrants(t, 1)
}
