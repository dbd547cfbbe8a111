package tracectx_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/scalestack/scalestack/internal/tracectx"
)

const (
	specTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	specParent = "00f067aa0ba902b7"
	specHeader = "00-" + specTrace + "-" + specParent + "-01"
)

// The examples and the rules of https://www.w3.org/TR/trace-context/
// section 3.2 (traceparent) and 4.3 (versioning).
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      bool
		sampled bool
	}{
		{specHeader, true, true},
		{"00-" + specTrace + "-" + specParent + "-00", true, false},
		{"00-" + specTrace + "-" + specParent + "-03", true, true}, // unknown flag dropped
		// A later version is read by its first four fields.
		{"cc-" + specTrace + "-" + specParent + "-01", true, true},
		{"cc-" + specTrace + "-" + specParent + "-01-what-the-future-will-be-like", true, true},
		{"cc-" + specTrace + "-" + specParent + "-01.what-the-future-will-be-like", false, false},
		{"00-" + specTrace + "-" + specParent + "-01-extra", false, false}, // 00 is exactly 55 bytes
		{"ff-" + specTrace + "-" + specParent + "-01", false, false},       // ff is invalid
		{"00-00000000000000000000000000000000-" + specParent + "-01", false, false},
		{"00-" + specTrace + "-0000000000000000-01", false, false},
		{"00-" + strings.ToUpper(specTrace) + "-" + specParent + "-01", false, false}, // HEXDIGLC
		{"00-" + specTrace + "-" + specParent + "-0G", false, false},
		{"0g-" + specTrace + "-" + specParent + "-01", false, false},
		{"00_" + specTrace + "-" + specParent + "-01", false, false},
		{"00-" + specTrace + "_" + specParent + "-01", false, false},
		{"00-" + specTrace + "-" + specParent + "_01", false, false},
		{"00-" + specTrace[1:] + "-" + specParent + "-01", false, false},
		{"00-" + specTrace + "-" + specParent + "-1", false, false},
		{"00-" + specTrace + "-" + specParent + "z01", false, false},
		{"", false, false},
		{"00", false, false},
	} {
		sc, err := tracectx.Parse(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%q) error = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if got := sc.TraceID.String(); got != specTrace {
			t.Errorf("Parse(%q).TraceID = %s, want %s", tc.in, got, specTrace)
		}
		if got := sc.SpanID.String(); got != specParent {
			t.Errorf("Parse(%q).SpanID = %s, want %s", tc.in, got, specParent)
		}
		if sc.Sampled() != tc.sampled {
			t.Errorf("Parse(%q).Sampled() = %v, want %v", tc.in, sc.Sampled(), tc.sampled)
		}
		if b, _ := tracectx.Parse([]byte(tc.in)); b != sc {
			t.Errorf("Parse([]byte(%q)) = %v, want %v", tc.in, b, sc)
		}
	}
}

func TestFormatRoundTrip(t *testing.T) {
	sc, err := tracectx.Parse(specHeader)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.String(); got != specHeader {
		t.Fatalf("String() = %q, want %q", got, specHeader)
	}
	// A later version is forwarded as the version this hop speaks.
	sc, _ = tracectx.Parse("cc-" + specTrace + "-" + specParent + "-01-future")
	if got := sc.String(); got != specHeader {
		t.Fatalf("String() of a version cc = %q, want %q", got, specHeader)
	}
}

func TestChild(t *testing.T) {
	parent, _ := tracectx.Parse(specHeader)
	c := parent.Child()
	if c.TraceID != parent.TraceID || c.Flags != parent.Flags {
		t.Fatalf("Child() = %v, want trace %s flags %02x", c, parent.TraceID, parent.Flags)
	}
	if c.SpanID == parent.SpanID || !c.SpanID.IsValid() {
		t.Fatalf("Child().SpanID = %s, want a new valid one (parent %s)", c.SpanID, parent.SpanID)
	}
}

func TestNew(t *testing.T) {
	a, b := tracectx.New(true), tracectx.New(false)
	if !a.IsValid() || !b.IsValid() || a.TraceID == b.TraceID {
		t.Fatalf("New() = %v, %v: want two valid, different traces", a, b)
	}
	if !a.Sampled() || b.Sampled() {
		t.Fatalf("New(true).Sampled() = %v, New(false).Sampled() = %v", a.Sampled(), b.Sampled())
	}
	if _, err := tracectx.Parse(a.String()); err != nil {
		t.Fatalf("Parse(New().String()) = %v", err)
	}
}

func TestContinue(t *testing.T) {
	sc, ok := tracectx.Continue(specHeader)
	if !ok || sc.TraceID.String() != specTrace || sc.SpanID.String() == specParent {
		t.Fatalf("Continue(%q) = %v, %v: want a child of it", specHeader, sc, ok)
	}
	for _, in := range []string{"", "00-garbage"} {
		sc, ok := tracectx.Continue(in)
		if ok || !sc.IsValid() || !sc.Sampled() {
			t.Fatalf("Continue(%q) = %v, %v: want a new sampled trace", in, sc, ok)
		}
	}
}

func TestContext(t *testing.T) {
	ctx := context.Background()
	if got := tracectx.Traceparent(ctx); got != "" {
		t.Fatalf("Traceparent(empty context) = %q, want \"\"", got)
	}
	sc, _ := tracectx.Parse(specHeader)
	ctx = tracectx.NewContext(ctx, sc)
	if got := tracectx.Traceparent(ctx); got != specHeader {
		t.Fatalf("Traceparent = %q, want %q", got, specHeader)
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tracectx.NewHandler(slog.NewJSONHandler(&buf, nil))).With("node", "app-1")
	sc, _ := tracectx.Parse(specHeader)
	log.InfoContext(tracectx.NewContext(context.Background(), sc), "request", "path", "/")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first["trace_id"] != specTrace || first["span_id"] != specParent || first["node"] != "app-1" {
		t.Errorf("line with a traced context = %s, want trace_id %s, span_id %s, node app-1", lines[0], specTrace, specParent)
	}
	_ = json.Unmarshal([]byte(lines[1]), &second)
	if _, ok := second["trace_id"]; ok {
		t.Errorf("line without a trace = %s, want no trace_id", lines[1])
	}
	if h := tracectx.NewHandler(log.Handler()); h != log.Handler() {
		t.Errorf("NewHandler(a Handler) wrapped it again")
	}
}

func TestParseAllocs(t *testing.T) {
	b := []byte(specHeader)
	out := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() {
		sc, _ := tracectx.Parse(b)
		out = sc.Child().AppendTo(out[:0])
	}); n != 0 {
		t.Fatalf("Parse, Child, AppendTo: %v allocations, want 0", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(specHeader)
	f.Add("cc-" + specTrace + "-" + specParent + "-01-future")
	f.Add("00-00000000000000000000000000000000-" + specParent + "-01")
	f.Fuzz(func(t *testing.T, in string) {
		sc, err := tracectx.Parse(in)
		if err != nil {
			if sc != (tracectx.SpanContext{}) {
				t.Fatalf("Parse(%q) failed but returned %v", in, sc)
			}
			return
		}
		if !sc.IsValid() {
			t.Fatalf("Parse(%q) = %v, an invalid context without error", in, sc)
		}
		// What parses formats to a version-00 field that parses the same,
		// and agrees with the input on the ids.
		out := sc.String()
		if len(out) != tracectx.Len || out[3:52] != in[3:52] {
			t.Fatalf("Parse(%q).String() = %q", in, out)
		}
		if again, err := tracectx.Parse(out); err != nil || again != sc {
			t.Fatalf("Parse(%q) = %v, %v; want %v", out, again, err, sc)
		}
	})
}

// BenchmarkForward is what a proxy adds to a request that carries a
// traceparent: parse it, make the hop's span, write the new field.
func BenchmarkForward(b *testing.B) {
	in := []byte(specHeader)
	out := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		sc, _ := tracectx.Parse(in)
		out = sc.Child().AppendTo(out[:0])
	}
}

// BenchmarkStart is what a proxy adds to a request without one.
func BenchmarkStart(b *testing.B) {
	out := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		out = tracectx.New(true).AppendTo(out[:0])
	}
}
