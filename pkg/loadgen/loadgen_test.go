package loadgen_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/loadgen"
)

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: loadgen.DefaultMix, want: "browse=80,read=10,comment=5,post=4,signup=1"},
		{in: " read = 3 , post=1 ", want: "read=3,post=1"},
		{in: "browse=1,page=0,post=2", want: "browse=1,post=2"},
		{in: "page=5", want: "page=5"},
		{in: "anon=9,post-image=1", want: "anon=9,post-image=1"},
		{in: "", err: "at least one operation"},
		{in: "browse=0", err: "at least one operation"},
		{in: "browse", err: "want op=weight"},
		{in: "surf=3", err: `unknown operation "surf"`},
		{in: "read=-1", err: "whole number"},
		{in: "read=x", err: "whole number"},
		{in: "read=1,read=2", err: "given twice"},
	} {
		m, err := loadgen.ParseMix(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMix(%q) error = %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseMix(%q) error = %v", tc.in, err)
			continue
		}
		if got := m.String(); got != tc.want {
			t.Errorf("ParseMix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMixPickFollowsWeights(t *testing.T) {
	m, err := loadgen.ParseMix("browse=80,post=20")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	const n = 100_000
	for range n {
		counts[m.Pick(r)]++
	}
	if got := float64(counts["browse"]) / n; got < 0.79 || got > 0.81 {
		t.Errorf("share of browse = %.3f, want 0.80±0.01", got)
	}
	if len(counts) != 2 {
		t.Errorf("picked %v, want only browse and post", counts)
	}
	if got, want := m.Share("post"), 0.2; got != want {
		t.Errorf("Share(post) = %v, want %v", got, want)
	}
}

func TestLatencyOfHistogram(t *testing.T) {
	h := hdrhistogram.New(1, 60_000_000, 3)
	// 1000 values: 1ms..1000ms in µs, so pN is N% of a second.
	for i := 1; i <= 1000; i++ {
		h.RecordValue(int64(i) * 1000)
	}
	got := loadgen.LatencyOf(h)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", got.P50, 500}, {"p90", got.P90, 900}, {"p99", got.P99, 990},
		{"p99.9", got.P999, 999}, {"max", got.Max, 1000}, {"mean", got.Mean, 500.5},
	} {
		if c.got < c.want*0.999 || c.got > c.want*1.001 {
			t.Errorf("%s = %.2fms, want %.2fms (±0.1%%)", c.name, c.got, c.want)
		}
	}
	if got.Count != 1000 {
		t.Errorf("Count = %d, want 1000", got.Count)
	}
	if empty := loadgen.LatencyOf(hdrhistogram.New(1, 60_000_000, 3)); empty != (loadgen.Latency{}) {
		t.Errorf("LatencyOf(empty) = %+v, want zero", empty)
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		edit func(*loadgen.Config)
		want string
	}{
		{func(c *loadgen.Config) { c.Target = "" }, "--target is required"},
		{func(c *loadgen.Config) { c.Target = "127.0.0.1:8081" }, "--target"},
		{func(c *loadgen.Config) { c.Rate = 0 }, "--rate"},
		{func(c *loadgen.Config) { c.Duration = 0 }, "--duration"},
		{func(c *loadgen.Config) { c.Users = 0 }, "--users"},
		{func(c *loadgen.Config) { c.Timeout = -1 }, "--timeout"},
	} {
		cfg := loadgen.DefaultConfig()
		cfg.Target = "http://127.0.0.1:1"
		tc.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
		}
	}
}

func TestRunAgainstNothingIsOneClearError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := loadgen.DefaultConfig()
	cfg.Target = "http://" + addr
	_, err = loadgen.Run(context.Background(), cfg)
	if !errors.Is(err, loadgen.ErrTarget) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run against a closed port = %v, want ErrTarget saying connection refused", err)
	}
}

func TestRunMeasuresMixAndHeaders(t *testing.T) {
	b := newFakeBlog()
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 400
	cfg.Duration = 750 * time.Millisecond
	cfg.Users = 5
	cfg.ReadYourWrites = true
	cfg.Seed = 7
	var progress bytes.Buffer
	cfg.Progress = &progress
	cfg.ProgressInterval = 200 * time.Millisecond
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Open loop: the arrivals are the rate times the duration, whatever
	// the answers; a small shortfall is the last tick.
	if want := int64(cfg.Rate * cfg.Duration.Seconds()); s.Sent < want-5 || s.Sent > want+1 {
		t.Errorf("Sent = %d, want about %d (rate × duration)", s.Sent, want)
	}
	if s.Errors != 0 || s.OK != s.Sent {
		t.Errorf("OK, Errors = %d, %d of %d sent; want all ok (errors: %v)", s.OK, s.Errors, s.Sent, s.ErrorKinds)
	}
	if s.Ops[loadgen.OpBrowse].Sent <= s.Ops[loadgen.OpPost].Sent {
		t.Errorf("browse sent %d, post %d: want browse (80%%) well above post (4%%)", s.Ops[loadgen.OpBrowse].Sent, s.Ops[loadgen.OpPost].Sent)
	}
	if s.Due != s.Sent+s.NotSent || s.NotSent != 0 || s.Answered != s.Sent {
		t.Errorf("Due, Sent, NotSent, Answered = %d, %d, %d, %d; want every due arrival sent and answered", s.Due, s.Sent, s.NotSent, s.Answered)
	}
	servedBy := s.Hops["X-Served-By"]
	if got := servedBy["fake-1"] + servedBy["fake-2"]; got != s.Sent || servedBy["fake-1"] == 0 || servedBy["fake-2"] == 0 {
		t.Errorf("Hops[X-Served-By] = %v, want the %d answers split between fake-1 and fake-2", servedBy, s.Sent)
	}
	if !maps.Equal(s.ServedBy, servedBy) || !maps.Equal(s.LB, s.Hops["X-LB"]) {
		t.Errorf("ServedBy %v, LB %v: want the same as Hops[X-Served-By] %v and Hops[X-LB] %v", s.ServedBy, s.LB, servedBy, s.Hops["X-LB"])
	}
	if got := s.Hops["X-LB"]["fake-lb"]; got != s.Sent {
		t.Errorf("Hops[X-LB] = %v, want all %d answers counted for fake-lb", s.Hops["X-LB"], s.Sent)
	}
	if got := s.Hops["X-Edge"]["fake-edge"]; got != s.Sent {
		t.Errorf("Hops[X-Edge] = %v, want all %d answers counted for fake-edge", s.Hops["X-Edge"], s.Sent)
	}
	// The fake app's cache hits name no store node; every other answer
	// names db-1 or replica-1.
	appCache, stores := s.Hops["X-App-Cache"], s.Hops["X-Store"]
	if appCache["HIT"] == 0 || appCache["MISS"] == 0 {
		t.Errorf("Hops[X-App-Cache] = %v, want HIT and MISS counted", appCache)
	}
	if stores["db-1"] == 0 || stores["replica-1"] == 0 || stores["db-1"]+stores["replica-1"] != s.Answered-appCache["HIT"] {
		t.Errorf("Hops[X-Store] = %v, want db-1 and replica-1 on the %d answers that were not app cache hits",
			stores, s.Answered-appCache["HIT"])
	}
	if s.Latency.Count != s.OK || s.Latency.P50 <= 0 || s.Latency.Max < s.Latency.P99 {
		t.Errorf("Latency = %+v, want a distribution of the %d ok requests", s.Latency, s.OK)
	}
	if s.ReadYourWrites == nil || s.ReadYourWrites.Checks == 0 || s.ReadYourWrites.Violations != 0 {
		t.Errorf("ReadYourWrites = %+v, want checks and no violations", s.ReadYourWrites)
	}
	if s.Writes == nil || s.Writes.Acknowledged == 0 || s.Writes.Lost != 0 || s.Writes.Verified != s.Writes.Acknowledged {
		t.Errorf("Writes = %+v, want every acknowledged write read back", s.Writes)
	}
	if !strings.Contains(progress.String(), "signed up 5 users") || !strings.Contains(progress.String(), "p99") {
		t.Errorf("progress output lacks the sign-up and live lines:\n%s", progress.String())
	}
	var out bytes.Buffer
	s.Print(&out)
	for _, want := range []string{"p99.9", "served by each node", "answered by app node (X-Served-By)", "fake-1", "answered by load balancer (X-LB)",
		"answered by store node (X-Store)", "replica-1", "(not set)", "answered by edge node (X-Edge)", "app cache (X-App-Cache)",
		"read-your-writes", "LOST 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	b2, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(summary): %v", err)
	}
	var back struct {
		Due  int64                       `json:"due"`
		Hops map[string]map[string]int64 `json:"hops"`
	}
	if err := json.Unmarshal(b2, &back); err != nil || back.Due != s.Due || back.Hops["X-Store"]["db-1"] != stores["db-1"] {
		t.Errorf("JSON summary = %s, want due and hops.X-Store", b2)
	}
}

// A paused stack must show on the progress line as what it is: arrivals
// still due and sent (open loop), piling up in flight, none done.
func TestProgressCountsDueArrivalsWhileTheStackStalls(t *testing.T) {
	b := newFakeBlog()
	b.stall = make(chan struct{})
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 200
	cfg.Duration = 2 * time.Second
	cfg.Users = 2
	cfg.Mix, _ = loadgen.ParseMix("browse=1")
	cfg.VerifyWrites = false
	cfg.MaxInFlight = 60
	cfg.ProgressInterval = 20 * time.Millisecond
	lineRE := regexp.MustCompile(`due (\d+)  sent (\d+)  in flight (\d+)  done (\d+) \(ok (\d+), errors (\d+)\)`)
	type figures struct{ due, sent, inFlight, done, ok, errs int64 }
	var mu sync.Mutex
	var lines []figures
	var raw []string
	cfg.Progress = writerFunc(func(p []byte) (int, error) {
		m := lineRE.FindSubmatch(p)
		if m == nil {
			return len(p), nil
		}
		var f figures
		for i, dst := range []*int64{&f.due, &f.sent, &f.inFlight, &f.done, &f.ok, &f.errs} {
			*dst, _ = strconv.ParseInt(string(m[i+1]), 10, 64)
		}
		mu.Lock()
		lines, raw = append(lines, f), append(raw, string(bytes.TrimSpace(p)))
		mu.Unlock()
		return len(p), nil
	})
	type outcome struct {
		s   *loadgen.Summary
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		s, err := loadgen.Run(context.Background(), cfg)
		done <- outcome{s, err}
	}()
	// Stalled: the bound of in-flight requests is reached, and arrivals
	// go on being due, counted as not sent beyond it.
	testwait.Until(t, 10*time.Second, "progress lines showing the in-flight bound reached and arrivals still due", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := len(lines)
		return n > 0 && lines[n-1].inFlight == int64(cfg.MaxInFlight) && lines[n-1].due > lines[n-1].sent
	})
	close(b.stall)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}

	mu.Lock()
	defer mu.Unlock()
	var stalled []figures
	for i, f := range lines {
		if f.sent != f.inFlight+f.done || f.done != f.ok+f.errs || f.due < f.sent {
			t.Errorf("line %q: want sent = in flight + done, done = ok + errors, due >= sent", raw[i])
		}
		if i > 0 && (f.due < lines[i-1].due || f.sent < lines[i-1].sent) {
			t.Errorf("line %q after %q: due and sent went down", raw[i], raw[i-1])
		}
		if f.done == 0 && f.inFlight > 0 {
			stalled = append(stalled, f)
		}
	}
	if len(stalled) < 2 {
		t.Fatalf("%d progress lines during the stall, want several:\n%s", len(stalled), strings.Join(raw, "\n"))
	}
	first, last := stalled[0], stalled[len(stalled)-1]
	if last.due <= first.due || last.inFlight <= first.inFlight {
		t.Errorf("during the stall due went %d -> %d and in flight %d -> %d; want both to climb", first.due, last.due, first.inFlight, last.inFlight)
	}
	s := o.s
	if s.Sent+s.NotSent != s.Due || s.NotSent == 0 || s.OK != s.Sent {
		t.Errorf("summary due %d, sent %d, not sent %d, ok %d: want due = sent + not sent, some not sent, every sent one ok after the stall",
			s.Due, s.Sent, s.NotSent, s.OK)
	}
	var out bytes.Buffer
	s.Print(&out)
	if !strings.Contains(out.String(), "NOT SENT") {
		t.Errorf("summary does not say arrivals were not sent:\n%s", out.String())
	}
}

func TestRunCountsLostWritesAndViolations(t *testing.T) {
	b := newFakeBlog()
	b.forget = true // acknowledges posts and comments, then never shows them
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 300
	cfg.Duration = 500 * time.Millisecond
	cfg.Users = 3
	cfg.Mix, _ = loadgen.ParseMix("post=1,comment=1,browse=1")
	cfg.ReadYourWrites = true
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Writes.Acknowledged == 0 || s.Writes.Lost != s.Writes.Acknowledged {
		t.Errorf("Writes = %+v, want every acknowledged write lost", s.Writes)
	}
	if s.ReadYourWrites.Violations == 0 || len(s.ReadYourWrites.Examples) == 0 {
		t.Errorf("ReadYourWrites = %+v, want violations with examples", s.ReadYourWrites)
	}
}

func TestRunGroupsErrorsByKind(t *testing.T) {
	b := newFakeBlog()
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 200
	cfg.Duration = 300 * time.Millisecond
	cfg.Users = 2
	cfg.Mix, _ = loadgen.ParseMix("browse=1")
	cfg.VerifyWrites = false
	b.failBrowse.Store(true)
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ErrorKinds["status 503 Service Unavailable"]; got != s.Sent || got == 0 {
		t.Errorf("ErrorKinds = %v, want all %d requests as status 503", s.ErrorKinds, s.Sent)
	}
	if s.Writes != nil {
		t.Errorf("Writes = %+v with VerifyWrites off, want nil", s.Writes)
	}
}

func TestRunLogsUsersInAgainAfterTheirSessionsAreLost(t *testing.T) {
	b := newFakeBlog()
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 200
	cfg.Duration = time.Second
	cfg.Users = 2
	cfg.Mix, _ = loadgen.ParseMix("post=1")
	cfg.VerifyWrites = false
	// Log everyone out once the run is under way; the ticker is the
	// run's progress line, which starts with the run itself.
	cfg.ProgressInterval = 200 * time.Millisecond
	var once sync.Once
	cfg.Progress = writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte("sent")) {
			once.Do(func() { b.sessions.Add(1) })
		}
		return len(p), nil
	})
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	unauthorized := s.ErrorKinds["status 401 Unauthorized"]
	if unauthorized == 0 || unauthorized > s.Sent/2 {
		t.Errorf("401 answers = %d of %d, want a few (the writes in flight at the logout)", unauthorized, s.Sent)
	}
	if got := s.Ops[loadgen.OpLogin]; got.OK != 2 {
		t.Errorf("logins = %+v, want one per user", got)
	}
	if s.OK < s.Sent-unauthorized {
		t.Errorf("%d ok of %d sent with %d 401s: want every other request ok once logged in again", s.OK, s.Sent, unauthorized)
	}
}

func TestRunAnonReadsPagesWithoutCookies(t *testing.T) {
	b := newFakeBlog()
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	b.seed(5)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 300
	cfg.Duration = 500 * time.Millisecond
	cfg.Users = 2
	cfg.Mix, _ = loadgen.ParseMix("anon=1")
	cfg.ReadYourWrites = true // must not turn an anonymous read into a user's
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	anon := s.Ops[loadgen.OpAnon]
	if anon.Sent == 0 || anon.OK != anon.Sent {
		t.Errorf("anon = %+v, want every page read ok (errors: %v)", anon, s.ErrorKinds)
	}
	if got, want := b.pages.Load(), anon.Sent; got != want {
		t.Errorf("the blog served %d pages, want %d (one per anon arrival)", got, want)
	}
	if got := b.cookiePages.Load(); got != 0 {
		t.Errorf("%d page requests carried a cookie, want none from anonymous readers", got)
	}
	if edge := s.Hops["X-Cache"]; edge["HIT"] == 0 || edge["MISS"] == 0 {
		t.Errorf("Hops[X-Cache] = %v, want HIT and MISS counted", edge)
	}
}

func TestRunPostImageUploadsADistinctPNGPerPost(t *testing.T) {
	b := newFakeBlog()
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	// Each operation uploads a 315 KiB PNG that the fake blog decodes: a
	// modest rate and a long timeout keep this a test of the operation,
	// not of how fast a -race build on a busy machine can decode images.
	cfg.Rate = 20
	cfg.Duration = 500 * time.Millisecond
	cfg.Timeout = 60 * time.Second
	cfg.Users = 3
	cfg.Mix, _ = loadgen.ParseMix("post-image=1")
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	op := s.Ops[loadgen.OpPostImage]
	if op.Sent == 0 || op.OK != op.Sent || s.Errors != 0 {
		t.Fatalf("post-image = %+v, errors %v; want every one ok", op, s.ErrorKinds)
	}
	b.mu.Lock()
	images := len(b.images)
	distinct := map[[32]byte]bool{}
	for _, h := range b.images {
		distinct[h] = true
	}
	b.mu.Unlock()
	if int64(images) != op.OK {
		t.Errorf("the blog holds %d images, want %d (one per post-image)", images, op.OK)
	}
	if len(distinct) != images {
		t.Errorf("%d distinct images of %d uploads, want each upload a distinct file", len(distinct), images)
	}
	if s.Writes == nil || s.Writes.Acknowledged != op.OK || s.Writes.Verified != op.OK {
		t.Errorf("Writes = %+v, want the %d posts acknowledged and read back", s.Writes, op.OK)
	}
	if op.Latency.P50 <= 0 {
		t.Errorf("post-image latency = %+v, want a distribution", op.Latency)
	}
}

func TestRunPostImageCountsAFailedUpload(t *testing.T) {
	b := newFakeBlog()
	b.forget = true // the post is acknowledged, then the upload finds no post: 404
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)

	cfg := loadgen.DefaultConfig()
	cfg.Target = srv.URL
	cfg.Rate = 100
	cfg.Duration = 300 * time.Millisecond
	cfg.Users = 2
	cfg.Mix, _ = loadgen.ParseMix("post-image=1")
	cfg.VerifyWrites = false
	s, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	op := s.Ops[loadgen.OpPostImage]
	if op.Sent == 0 || op.Errors != op.Sent || s.ErrorKinds["status 404 Not Found"] != op.Sent {
		t.Errorf("post-image = %+v, errors %v; want every one failed with the upload's 404", op, s.ErrorKinds)
	}
}

// failWindow is a range of request numbers, from included, to excluded.
type failWindow struct{ from, to int64 }

// newServer serves h on a loopback port until the test ends.
func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// fakeBlog is the part of the blog's JSON API the generator uses, in
// memory, answering as two app nodes in turn.
type fakeBlog struct {
	mu    sync.Mutex
	users map[string]bool
	posts map[string][]string // post id -> comment ids
	// authors are the posts' authors' handles, by post id.
	authors map[string]string
	order   []string
	n       int
	forget  bool // acknowledge writes but lose them
	mux     *http.ServeMux
	// failBrowse answers 503 to the feed when a page is asked for (the
	// generator's browsing, not its first probe).
	failBrowse atomic.Bool
	// failFeed, a failWindow, answers 503 to the feed's page requests
	// from the from-th to before the to-th (counted from 0, in the order
	// they reach the blog); feedN counts them.
	failFeed atomic.Value
	feedN    atomic.Int64
	// sessions is the generation of valid session cookies; raising it
	// logs everyone out, as an app restart with in-memory sessions does.
	sessions atomic.Int64
	// pages counts HTML page requests, and cookiePages those that carried
	// a cookie.
	pages, cookiePages atomic.Int64
	// images are the sha256 of every PNG accepted, by post id.
	images map[string][32]byte
	// The services' routes (services_test.go): failSearch answers search
	// 503; tipMode is how the payments side answers (tipCharge...);
	// payments are the charges made, payKeys their index by handle and
	// Idempotency-Key; searches and profiles count those requests, and
	// badTips the tips that would have been refused (no key, own post).
	failSearch         atomic.Bool
	tipMode            atomic.Int32
	payments           []fakePayment
	payKeys            map[string]int
	searches, profiles atomic.Int64
	badTips            atomic.Int64
	// stall, when not nil, holds every request for the feed's pages (the
	// generator's browsing, not its first probe) until it is closed: a
	// paused node.
	stall chan struct{}
}

func newFakeBlog() *fakeBlog {
	b := &fakeBlog{users: map[string]bool{}, posts: map[string][]string{}, authors: map[string]string{}, images: map[string][32]byte{},
		mux: http.NewServeMux(), payKeys: map[string]int{}}
	page := func(w http.ResponseWriter, r *http.Request) {
		b.pages.Add(1)
		if len(r.Cookies()) > 0 {
			b.cookiePages.Add(1)
		}
		if id := r.PathValue("id"); id != "" {
			b.mu.Lock()
			_, ok := b.posts[id]
			b.mu.Unlock()
			if !ok {
				http.Error(w, "not found", http.StatusNotFound)
				return
			}
		}
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("X-Cache", []string{"HIT", "MISS"}[b.pages.Load()%2])
		w.Write([]byte("<!doctype html><title>blog</title>"))
	}
	b.mux.HandleFunc("GET /{$}", page)
	b.mux.HandleFunc("GET /p/{id}", page)
	b.mux.HandleFunc("POST /api/v1/posts/{id}/image", func(w http.ResponseWriter, r *http.Request) {
		if !b.authed(w, r) {
			return
		}
		b.mu.Lock()
		_, exists := b.posts[r.PathValue("id")]
		b.mu.Unlock()
		if !exists {
			// Before decoding, which a -race build on a busy machine
			// does slowly enough to time out 30 uploads at once.
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		f, _, err := r.FormFile("image")
		if err != nil {
			http.Error(w, `{"error":"want multipart with a file named image"}`, http.StatusUnsupportedMediaType)
			return
		}
		defer f.Close()
		data, _ := io.ReadAll(f)
		if _, err := png.Decode(bytes.NewReader(data)); err != nil {
			http.Error(w, `{"error":"not a PNG"}`, http.StatusUnsupportedMediaType)
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		id := r.PathValue("id")
		if _, ok := b.posts[id]; !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		b.images[id] = sha256.Sum256(data)
		fmt.Fprintf(w, `{"post":{"id":%q}}`, id)
	})
	b.mux.HandleFunc("POST /api/v1/signup", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Handle string }
		json.NewDecoder(r.Body).Decode(&in)
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.users[in.Handle] {
			http.Error(w, `{"error":"taken"}`, http.StatusConflict)
			return
		}
		b.users[in.Handle] = true
		b.setSession(w, in.Handle)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"user":{"handle":%q}}`, in.Handle)
	})
	b.mux.HandleFunc("POST /api/v1/login", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Handle string }
		json.NewDecoder(r.Body).Decode(&in)
		b.setSession(w, in.Handle)
		w.Write([]byte(`{"user":{}}`))
	})
	b.mux.HandleFunc("GET /api/v1/posts", func(w http.ResponseWriter, r *http.Request) {
		if b.failBrowse.Load() && r.URL.Query().Has("page") {
			http.Error(w, `{"error":"down"}`, http.StatusServiceUnavailable)
			return
		}
		if r.URL.Query().Has("page") {
			n := b.feedN.Add(1) - 1
			if fw, ok := b.failFeed.Load().(failWindow); ok && n >= fw.from && n < fw.to {
				http.Error(w, `{"error":"down"}`, http.StatusServiceUnavailable)
				return
			}
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		var ps []map[string]string
		for i := len(b.order) - 1; i >= 0 && len(ps) < 10; i-- {
			ps = append(ps, map[string]string{"id": b.order[i], "author": b.authors[b.order[i]]})
		}
		hit := len(b.order)%2 == 0
		w.Header().Set("X-App-Cache", map[bool]string{true: "HIT", false: "MISS"}[hit])
		if !hit {
			w.Header().Set("X-Store", "replica-1")
		}
		json.NewEncoder(w).Encode(map[string]any{"posts": ps, "page": 1, "next": 0})
	})
	b.mux.HandleFunc("POST /api/v1/posts", func(w http.ResponseWriter, r *http.Request) {
		handle, ok := b.user(w, r)
		if !ok {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.n++
		id := fmt.Sprintf("p%d", b.n)
		if !b.forget {
			b.posts[id] = nil
			b.authors[id] = handle
			b.order = append(b.order, id)
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"post":{"id":%q}}`, id)
	})
	b.mux.HandleFunc("GET /api/v1/posts/{id}", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		id := r.PathValue("id")
		if _, ok := b.posts[id]; !ok {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, `{"post":{"id":%q}}`, id)
	})
	b.mux.HandleFunc("GET /api/v1/posts/{id}/comments", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		defer b.mu.Unlock()
		var cs []map[string]string
		for _, c := range b.posts[r.PathValue("id")] {
			cs = append(cs, map[string]string{"id": c})
		}
		json.NewEncoder(w).Encode(map[string]any{"comments": cs})
	})
	b.mux.HandleFunc("POST /api/v1/posts/{id}/comments", func(w http.ResponseWriter, r *http.Request) {
		if !b.authed(w, r) {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		id := r.PathValue("id")
		b.n++
		cid := fmt.Sprintf("c%d", b.n)
		if !b.forget {
			b.posts[id] = append(b.posts[id], cid)
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"comment":{"id":%q}}`, cid)
	})
	b.services()
	return b
}

// seed adds n posts by "seed-author", so that reads find some at once.
func (b *fakeBlog) seed(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range n {
		id := fmt.Sprintf("seed%d", i)
		b.posts[id] = nil
		b.authors[id] = "seed-author"
		b.order = append(b.order, id)
	}
}

// setSession sets a cookie of the current session generation for handle.
func (b *fakeBlog) setSession(w http.ResponseWriter, handle string) {
	http.SetCookie(w, &http.Cookie{Name: "s", Value: fmt.Sprintf("%d.%s", b.sessions.Load(), handle), Path: "/"})
}

// user answers 401 unless r carries a session of the current generation,
// and returns its user's handle.
func (b *fakeBlog) user(w http.ResponseWriter, r *http.Request) (string, bool) {
	c, err := r.Cookie("s")
	var gen, handle string
	if err == nil {
		gen, handle, _ = strings.Cut(c.Value, ".")
	}
	if err != nil || gen != fmt.Sprint(b.sessions.Load()) {
		http.Error(w, `{"error":"log in first"}`, http.StatusUnauthorized)
		return "", false
	}
	return handle, true
}

func (b *fakeBlog) authed(w http.ResponseWriter, r *http.Request) bool {
	_, ok := b.user(w, r)
	return ok
}

func (b *fakeBlog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.stall != nil && r.URL.Query().Has("page") {
		select {
		case <-b.stall:
		case <-r.Context().Done():
			return
		}
	}
	b.mu.Lock()
	b.n++
	name := []string{"fake-1", "fake-2"}[b.n%2]
	b.mu.Unlock()
	w.Header().Set("X-Served-By", name)
	w.Header().Set("X-LB", "fake-lb")
	w.Header().Set("X-Edge", "fake-edge")
	if r.Method != http.MethodGet || r.URL.Path != "/api/v1/posts" {
		w.Header().Set("X-Store", "db-1") // the feed sets its own
	}
	w.Header().Set("Content-Type", "application/json")
	b.mux.ServeHTTP(w, r)
}
