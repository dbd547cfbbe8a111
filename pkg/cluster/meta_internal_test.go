package cluster

import (
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{
		{Name: "n", State: StateUp},
		{Name: "n", Roles: []string{"lb", "app"}, Addrs: map[string]string{"lb": "127.0.0.2:8080"}, State: StateDraining},
		{Name: "n", Roles: []string{"primary"}, Group: "posts", Service: "posts", State: StateUp},
		{Name: "n", Addrs: map[string]string{"app": "[fd00::1]:8081", "admin": "[fd00::1]:9090", "cache": "10.0.0.1:6379"}, State: StateStarting},
		{Name: "n", Addrs: map[string]string{"app": ":8081", "admin": "h:9090", "x": "h:1"}, State: StateUp},
		{Name: "n", Addrs: map[string]string{"b": "b:1", "a": "a:1", "a2": "a:2", "b2": "b:2"}, State: StateUp},
	} {
		for _, leaving := range []bool{false, true} {
			b, err := encodeMeta(m, leaving)
			if err != nil {
				t.Fatalf("encodeMeta(%+v): %v", m, err)
			}
			got, gotLeaving, err := decodeMeta(m.Name, b)
			if err != nil {
				t.Fatalf("decodeMeta(%s): %v", b, err)
			}
			if !got.equal(m) || gotLeaving != leaving {
				t.Errorf("decodeMeta(encodeMeta(%+v, %v)) = %+v, %v", m, leaving, got, gotLeaving)
			}
		}
	}
	// An up node with nothing else costs two bytes on the wire.
	if b, _ := encodeMeta(Meta{Name: "n", State: StateUp}, false); string(b) != "{}" {
		t.Errorf("encodeMeta(empty, up) = %s, want {}", b)
	}
}

func TestMetaSizeOfAFullNode(t *testing.T) {
	m := Meta{
		Name:    "n",
		Roles:   []string{"edge", "lb", "app", "primary", "replica", "cache", "worker"},
		Addrs:   map[string]string{},
		Group:   "comments",
		Service: "comments",
		State:   StateDraining,
	}
	for _, k := range []string{"edge", "lb", "app", "store", "cache", "nats", "nats-cluster", "admin", "gossip"} {
		m.Addrs[k] = "[fd00:1234:5678:9abc::101]:65535"
	}
	b, err := encodeMeta(m, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("every role and port on IPv6: %d bytes: %s", len(b), b)
	if len(b) > 350 {
		t.Errorf("encodeMeta(full node) = %d bytes, want the shared host written once (under 350)", len(b))
	}
}

func TestDecodeMetaEmptyIsUp(t *testing.T) {
	m, leaving, err := decodeMeta("n", nil)
	if err != nil || m.Name != "n" || m.State != StateUp || leaving {
		t.Errorf("decodeMeta(nil) = %+v, %v, %v; want n up", m, leaving, err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"r":["app"],"a":{"app":"127.0.0.2:8081"},"st":"draining","x":true}`))
	f.Add([]byte(`{"r":null,"a":[]}`))
	f.Add([]byte{0xff, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, leaving, err := decodeMeta("n", b)
		if err != nil {
			return
		}
		if m.Name != "n" || m.State == "" {
			t.Fatalf("decodeMeta(%q) = %+v: name or state missing", b, m)
		}
		// Whatever decodes and fits re-encodes to the same meta.
		if m.validate() != nil {
			return
		}
		re, err := encodeMeta(m, leaving)
		if err != nil {
			return
		}
		m2, leaving2, err := decodeMeta("n", re)
		if err != nil || !m2.equal(m) || leaving2 != leaving {
			t.Fatalf("re-decode of %s = %+v, %v, %v; want %+v", re, m2, leaving2, err, m)
		}
	})
}

func TestSubscriptionCoalesces(t *testing.T) {
	s := newSubscription(0, nil)
	join := func(name, svc string) Event {
		return Event{Kind: EventJoin, Member: Member{Meta: Meta{Name: name, Service: svc}}}
	}
	s.push(join("a", ""))
	s.push(join("b", "1"))
	s.push(Event{Kind: EventUpdate, Member: Member{Meta: Meta{Name: "b", Service: "2"}}})
	s.push(Event{Kind: EventLeave, Member: Member{Meta: Meta{Name: "a"}, Status: StatusDead}})
	s.push(join("c", ""))
	go s.run()
	defer s.close()
	for _, want := range []struct {
		name string
		kind EventKind
		svc  string
	}{
		{"a", EventLeave, ""}, // the subscriber never saw a: a leave is all it needs
		{"b", EventJoin, "2"}, // still a join, with the latest metadata
		{"c", EventJoin, ""},
	} {
		ev := <-s.out
		if ev.Member.Name != want.name || ev.Kind != want.kind || ev.Member.Service != want.svc {
			t.Errorf("event = %s %s %q, want %s %s %q", ev.Kind, ev.Member.Name, ev.Member.Service, want.kind, want.name, want.svc)
		}
	}
}

func TestMemberlistLogLevels(t *testing.T) {
	var got []string
	h := &recordHandler{record: func(msg string, level string) { got = append(got, level+" "+msg) }}
	l := newMemberlistLogger(slogNew(h))
	l.Printf("[ERR] memberlist: Failed fallback TCP ping: %s", "x")
	l.Printf("[DEBUG] memberlist: Stream connection from=%s", "y")
	l.Printf("no prefix")
	want := []string{"ERR Failed fallback TCP ping: x", "DEBUG Stream connection from=y", "INFO no prefix"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}
