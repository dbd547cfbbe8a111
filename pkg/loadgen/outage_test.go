package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/loadgen"
)

func TestLongestOutage(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, n := range v {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	const T, F = true, false
	for _, tc := range []struct {
		name string
		due  []time.Duration
		ok   []bool
		end  time.Duration
		want time.Duration
	}{
		{"none", nil, nil, 1000 * time.Millisecond, 0},
		{"all ok", ms(0, 10, 20), []bool{T, T, T}, time.Second, 0},
		{"one failure, then a success", ms(0, 10, 20), []bool{T, F, T}, time.Second, 10 * time.Millisecond},
		{"from the first failure to the next success", ms(0, 10, 20, 30, 40), []bool{T, F, F, F, T}, time.Second, 30 * time.Millisecond},
		{"the longer of two", ms(0, 10, 20, 30, 40, 50, 60), []bool{F, T, F, F, F, T, T}, time.Second, 30 * time.Millisecond},
		{"to the run's end", ms(0, 10, 20), []bool{T, T, F}, 100 * time.Millisecond, 80 * time.Millisecond},
		{"every one failed", ms(5, 10, 20), []bool{F, F, F}, 100 * time.Millisecond, 95 * time.Millisecond},
		// Answers end out of order: a timeout due first ends last.
		{"sorted by due time", ms(40, 10, 30, 20, 0), []bool{T, F, F, T, T}, time.Second, 10 * time.Millisecond},
	} {
		if got := loadgen.LongestOutage(tc.due, tc.ok, tc.end); got != tc.want {
			t.Errorf("%s: LongestOutage = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A blog whose feed fails for a stretch of requests: browse reports an
// outage, read (which never failed) none, in the table and the JSON.
func TestRunReportsEachOpsWorstOutage(t *testing.T) {
	b := newFakeBlog()
	b.seed(5)
	b.failFeed.Store(failWindow{from: 30, to: 70})
	srv := newServer(t, b)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 200
	cfg.Duration = time.Second
	cfg.Users = 3
	cfg.Mix, _ = loadgen.ParseMix("browse=1,read=1")
	cfg.VerifyWrites = false
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	browse, read := s.Ops[loadgen.OpBrowse], s.Ops[loadgen.OpRead]
	if browse.Errors != 40 || s.Errors != 40 {
		t.Fatalf("browse = %+v, %d errors in all (%v); want the 40 failed feed requests", browse, s.Errors, s.ErrorKinds)
	}
	if browse.LongestOutage <= 0 || browse.LongestOutage > s.Duration*1000 {
		t.Errorf("browse's LongestOutage = %vms, want above 0 and within the %.2fs run", browse.LongestOutage, s.Duration)
	}
	if read.Sent == 0 || read.LongestOutage != 0 {
		t.Errorf("read = %+v, want sent and no outage", read)
	}
	var out bytes.Buffer
	s.Print(&out)
	if !strings.Contains(out.String(), "worst outage") {
		t.Errorf("summary lacks the worst outage column:\n%s", out.String())
	}
	b2, _ := json.Marshal(s)
	var back struct {
		Ops map[string]struct {
			LongestOutage *float64 `json:"longest_outage_ms"`
		} `json:"ops"`
	}
	if err := json.Unmarshal(b2, &back); err != nil || back.Ops["browse"].LongestOutage == nil || *back.Ops["browse"].LongestOutage != browse.LongestOutage ||
		back.Ops["read"].LongestOutage == nil {
		t.Errorf("JSON summary = %s, want ops.*.longest_outage_ms", b2)
	}
}

// Failures up to the run's end are an outage that lasts to the end.
func TestRunCountsAnOutageThatLastsToTheEnd(t *testing.T) {
	b := newFakeBlog()
	b.failFeed.Store(failWindow{from: 20, to: 1 << 40})
	srv := newServer(t, b)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 200
	cfg.Duration = 500 * time.Millisecond
	cfg.Users = 2
	cfg.Mix, _ = loadgen.ParseMix("browse=1")
	cfg.VerifyWrites = false
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	browse := s.Ops[loadgen.OpBrowse]
	if browse.OK != 20 || browse.Errors != browse.Sent-20 {
		t.Fatalf("browse = %+v, want 20 ok and every later one failed", browse)
	}
	if browse.LongestOutage <= 0 {
		t.Errorf("browse's LongestOutage = %vms, want the stretch from the 21st arrival to the run's end", browse.LongestOutage)
	}
}
