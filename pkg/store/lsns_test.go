package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/scalestack/scalestack/pkg/store"
)

func TestLSNsString(t *testing.T) {
	for _, tc := range []struct {
		in   store.LSNs
		want string
	}{
		{nil, "0"},
		{store.LSNs{"": 0}, "0"},
		{store.LSNsOf("", 123), "123"},
		{store.LSNsOf("default", 123), "123"},
		{store.LSNs{"": 123, "content": 45}, "123,content=45"},
		{store.LSNs{"users": 7, "content": 45}, "content=45,users=7"},
		{store.LSNs{"content": 0, "": 5}, "5"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseLSNs(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want is the String form; "!" for an error
	}{
		{"", "0"},
		{"0", "0"},
		{"123", "123"}, // a single LSN, as stages 1-9 wrote: the default group's
		{"content=45", "content=45"},
		{"content=45,123", "123,content=45"},
		{"default=9,users=3", "9,users=3"},
		{"content=4,content=9", "content=9"},
		{"=4", "!"},
		{"Content=4", "!"},
		{"content=", "!"},
		{"content=x", "!"},
		{"12,", "!"},
		{"-1", "!"},
	} {
		got, err := store.ParseLSNs(tc.in)
		if tc.want == "!" {
			if err == nil {
				t.Errorf("ParseLSNs(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseLSNs(%q) = %v, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLSNsWithAndMerge(t *testing.T) {
	a := store.LSNsOf("", 10)
	if b := a.With("", 5); b.Get("") != 10 {
		t.Errorf("With a lower LSN = %v, want 10 kept", b)
	}
	b := a.With("content", 3)
	if a.Get("content") != 0 || b.Get("content") != 3 || b.Get("default") != 10 {
		t.Errorf("With(content, 3) = %v (was %v), want a copy with content=3 and a unchanged", b, a)
	}
	m := b.Merge(store.LSNs{"": 7, "content": 8, "users": 1})
	if got, want := m.String(), "10,content=8,users=1"; got != want {
		t.Errorf("Merge = %q, want %q", got, want)
	}
	if got := b.String(); got != "10,content=3" {
		t.Errorf("Merge changed its receiver to %q", got)
	}
}

// A session record written before store groups held a number; one that
// wrote only in the default group still does; one with other groups holds
// the String form.
func TestLSNsJSON(t *testing.T) {
	type record struct{ LastLSN store.LSNs }
	for _, tc := range []struct {
		in   store.LSNs
		want string
	}{
		{nil, `{"LastLSN":0}`},
		{store.LSNsOf("", 42), `{"LastLSN":42}`},
		{store.LSNs{"": 42, "content": 7}, `{"LastLSN":"42,content=7"}`},
	} {
		b, err := json.Marshal(record{tc.in})
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tc.in, b, err, tc.want)
		}
		var back record
		if err := json.Unmarshal(b, &back); err != nil || back.LastLSN.String() != tc.in.String() {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", b, back.LastLSN, err, tc.in)
		}
	}
	var old record
	if err := json.Unmarshal([]byte(`{"LastLSN":17}`), &old); err != nil || old.LastLSN.Get(store.DefaultGroup) != 17 {
		t.Errorf("old record = %v, %v; want the default group at 17", old.LastLSN, err)
	}
	if err := json.Unmarshal([]byte(`{"LastLSN":"x=1=2"}`), &old); err == nil {
		t.Errorf("a malformed LSNs decoded without error")
	}
}

// A Trace keeps each group's highest LSN apart: a call to content at LSN
// 900 does not raise what the default group has seen.
func TestTraceByGroup(t *testing.T) {
	var tr store.Trace
	tr.Record("db-1", 12)
	tr.RecordIn("content", "content-1", 900)
	tr.RecordIn("content", "content-2", 800)
	tr.Record("replica-1", 10)
	node, lsn := tr.Values()
	if node != "replica-1" || lsn != 12 {
		t.Errorf("Values() = %q, %d; want replica-1, 12", node, lsn)
	}
	if _, seen := tr.Seen(); seen.String() != "12,content=900" {
		t.Errorf("Seen() = %v, want 12,content=900", seen)
	}
	var parent store.Trace
	_, seen := tr.Seen()
	parent.RecordAll("replica-1", seen)
	if _, got := parent.Seen(); got.String() != "12,content=900" {
		t.Errorf("RecordAll then Seen() = %v, want 12,content=900", got)
	}
}

func TestConsistencyByGroup(t *testing.T) {
	ctx := store.WithConsistencyLSNs(context.Background(), store.Session, store.LSNs{"": 5, "content": 90})
	if c, lsn := store.ConsistencyFrom(ctx); c != store.Session || lsn != 5 {
		t.Errorf("ConsistencyFrom = %v, %d; want session, 5 (the default group's)", c, lsn)
	}
	ctx = store.WithConsistency(context.Background(), store.Session, 7)
	if _, l := store.ConsistencyLSNs(ctx); l.String() != "7" {
		t.Errorf("ConsistencyLSNs after WithConsistency(7) = %v, want 7", l)
	}
}

func FuzzParseLSNs(f *testing.F) {
	for _, s := range []string{"", "0", "123", "123,content=45", "content=4,content=9", "=4", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := store.ParseLSNs(s)
		if err != nil {
			return
		}
		again, err := store.ParseLSNs(l.String())
		if err != nil || again.String() != l.String() {
			t.Fatalf("ParseLSNs(%q).String() = %q reads back as %v, %v", s, l.String(), again, err)
		}
	})
}
