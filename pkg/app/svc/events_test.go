package svc_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

func TestValidEventType(t *testing.T) {
	for typ, want := range map[string]bool{
		svc.EventPostPublished:   true,
		svc.EventBadgeGranted:    true,
		"a":                      true,
		"user.signed-up_v2":      true,
		"":                       false,
		".post":                  false,
		"post.":                  false,
		"post..published":        false,
		"post.*":                 false,
		"post.>":                 false,
		"Post.published":         false,
		"post published":         false,
		string(make([]byte, 65)): false,
	} {
		if got := svc.ValidEventType(typ); got != want {
			t.Errorf("ValidEventType(%q) = %v, want %v", typ, got, want)
		}
	}
}

func FuzzValidEventType(f *testing.F) {
	f.Add("post.published")
	f.Add("a..b")
	f.Fuzz(func(t *testing.T, typ string) {
		if !svc.ValidEventType(typ) {
			return
		}
		// A valid type is a subject without wildcards or empty tokens.
		for i := 0; i < len(typ); i++ {
			if c := typ[i]; c == '*' || c == '>' || c == ' ' || c >= 0x80 || c == '.' && (i == 0 || i == len(typ)-1 || typ[i-1] == '.') {
				t.Fatalf("ValidEventType(%q) = true, want false", typ)
			}
		}
	})
}

func TestEventDecode(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.FixedZone("x", 3600))
	ev := svc.NewEvent("payments", svc.EventBadgeGranted, at, svc.BadgeGranted{UserID: "u1", PaymentID: "p1"})
	if ev.ID == "" || ev.Source != "payments" || !ev.Time.Equal(at) || ev.Time.Location() != time.UTC {
		t.Errorf("NewEvent = %+v, want an id, the source and the time in UTC", ev)
	}
	var d svc.BadgeGranted
	if err := ev.Decode(&d); err != nil || d != (svc.BadgeGranted{UserID: "u1", PaymentID: "p1"}) {
		t.Errorf("Decode = %+v, %v; want the data back", d, err)
	}
	ev.Data = []byte(`"a string"`)
	if err := ev.Decode(&d); !errors.Is(err, svc.ErrBadEvent) {
		t.Errorf("Decode(a string) = %v, want ErrBadEvent", err)
	}
}

// Pending pages through the outbox oldest first and names what it cannot
// read instead of stopping at it; Remove ignores what is gone.
func TestEventOutboxPending(t *testing.T) {
	ctx := context.Background()
	st := apptest.NewMemStore()
	o := svc.OutboxOf(st, "content")
	if evs, bad, next, err := o.Pending(ctx, "", 0); err != nil || len(evs)+len(bad) != 0 || next != "" {
		t.Fatalf("Pending of a new outbox = %v, %v, %q, %v; want nothing", evs, bad, next, err)
	}
	var want []string
	start := time.Now()
	for i := range 5 {
		ev := svc.NewEvent("content", svc.EventPostPublished, start.Add(time.Duration(i)*time.Millisecond), svc.PostPublished{PostID: fmt.Sprint(i)})
		if _, err := st.Txn(ctx, o.Put(ev)); err != nil {
			t.Fatal(err)
		}
		want = append(want, ev.ID)
	}
	garbage := want[2] + "0"
	if _, err := st.Txn(ctx, store.Put(o.Bucket(), garbage, []byte("not an event"))); err != nil {
		t.Fatal(err)
	}
	var got, undecodable []string
	pages := 0
	for after := ""; ; {
		pages++
		evs, bad, next, err := o.Pending(ctx, after, 2)
		if err != nil {
			t.Fatalf("Pending(%q): %v", after, err)
		}
		for _, ev := range evs {
			got = append(got, ev.ID)
		}
		undecodable = append(undecodable, bad...)
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(got, want) || !slices.Equal(undecodable, []string{garbage}) || pages != 4 {
		// Six entries in pages of two: three full pages, and an empty one
		// that says the third was the last.
		t.Errorf("Pending pages = %q, undecodable %q in %d pages; want %q, [%s] in 4", got, undecodable, pages, want, garbage)
	}
	if err := o.Remove(ctx, append(want, "gone")...); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if evs, bad, _, err := o.Pending(ctx, "", 0); err != nil || len(evs) != 0 || len(bad) != 1 {
		t.Errorf("Pending after Remove = %v, %v, %v; want only the undecodable entry", evs, bad, err)
	}
}

// Concurrent deliveries of one event apply it once; effect's own
// conditions are retried when another event changed what it read.
func TestApplyOnce(t *testing.T) {
	ctx := context.Background()
	st := apptest.NewMemStore()
	const bucket, counter = "search.events", "search.count"
	bump := func(ctx context.Context) ([]store.Op, error) {
		cur, err := st.Get(ctx, counter, "n")
		if errors.Is(err, store.ErrNotFound) {
			return []store.Op{store.IfAbsent(counter, "n"), store.Put(counter, "n", []byte("1"))}, nil
		}
		if err != nil {
			return nil, err
		}
		var n int
		fmt.Sscan(string(cur), &n)
		return []store.Op{store.IfEqual(counter, "n", cur), store.Put(counter, "n", []byte(fmt.Sprint(n+1)))}, nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	applied := map[string]int{}
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("ev%d", i%4) // each of 4 events delivered 4 times at once
			ok, err := svc.ApplyOnce(ctx, st, bucket, id, nil, bump)
			if err != nil {
				t.Errorf("ApplyOnce(%s): %v", id, err)
			}
			if ok {
				mu.Lock()
				applied[id]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i := range 4 {
		if id := fmt.Sprintf("ev%d", i); applied[id] != 1 {
			t.Errorf("%s applied %d times, want 1", id, applied[id])
		}
	}
	if n, err := st.Get(ctx, counter, "n"); err != nil || string(n) != "4" {
		t.Errorf("counter = %s, %v; want 4 (one per event)", n, err)
	}
	if _, err := svc.ApplyOnce(ctx, st, bucket, "", nil, bump); !errors.Is(err, svc.ErrBadEvent) {
		t.Errorf("ApplyOnce without an id = %v, want ErrBadEvent", err)
	}
}
