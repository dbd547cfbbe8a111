package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: 1µs to 60s at 3 significant digits (0.1% error), a
// few tens of KiB per histogram.
const (
	histMin    = 1
	histMax    = int64(60 * time.Second / time.Microsecond)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// LatencyOf summarizes a histogram of microseconds.
func LatencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// record adds one latency, clamped to the histogram's range (a response
// slower than 60s is counted as 60s rather than lost).
func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := max(min(d.Microseconds(), histMax), histMin)
	h.RecordValue(us)
}

// result is the outcome of one request.
type result struct {
	op      string
	due     time.Time     // when the arrival was due: its outage clock
	latency time.Duration // from the intended send time to the end of the body
	status  int
	err     error
	header  http.Header
}

// ok reports whether the request succeeded: a 2xx answer.
func (r result) ok() bool { return r.err == nil && r.status >= 200 && r.status < 300 }

// Hop is a response header that a node of the stack sets on the blog's
// answers: who took part in the answer (Node) or what a cache tier did
// with it.
type Hop struct {
	// Header is the field's name, as the node writes it.
	Header string
	// Title says what its values are, for the summary.
	Title string
	// Node is true when the value names a node (app-1, db-1); false for a
	// cache's verdict, whose first word (HIT, MISS, STALE) is counted.
	Node bool
}

// Hops are the headers the summary counts, from the client inwards: the
// edge (pkg/cdn: X-Edge, X-Cache), the balancer (pkg/lb: X-LB), the app
// (pkg/app: X-Served-By, X-App-Cache, and X-Store, the store node that
// answered its reads or took its writes). X-Store-LSN is a log position,
// not a node; Via repeats the edge and the lb.
func Hops() []Hop {
	return []Hop{
		{Header: "X-Edge", Title: "edge node", Node: true},
		{Header: "X-Cache", Title: "edge cache"},
		{Header: "X-LB", Title: "load balancer", Node: true},
		{Header: "X-Served-By", Title: "app node", Node: true},
		{Header: "X-App-Cache", Title: "app cache"},
		{Header: "X-Store", Title: "store node", Node: true},
	}
}

// recorder collects results from every worker.
type recorder struct {
	mu     sync.Mutex
	all    *hdrhistogram.Histogram // successful requests, whole run
	window *hdrhistogram.Histogram // successful requests since the last progress line
	ops    map[string]*opRecord
	// errKinds counts failures by errorKind.
	errKinds map[string]int64
	// hops counts answers by the value of each of Hops' headers.
	hops map[string]map[string]int64
	// answered counts requests that got an HTTP answer (any status).
	answered int64
	// due counts the arrivals whose time came; each was sent or, over
	// MaxInFlight, not sent. done counts the sent ones that ended, ok or
	// not; sent minus done is in flight.
	due, sent, notSent, done int64
	ok, errs                 int64
	winErrs                  int64
}

type opRecord struct {
	sent, ok, errs int64
	hist           *hdrhistogram.Histogram
	// outcomes are the op's arrivals in the order they ended, for
	// longestOutage (16 bytes each: an hour at 1000/s is 58 MB).
	outcomes []outcome
	// servedBy counts the instances each answer's X-Served-By named (at
	// stage 10 the app and every service instance it called), at most
	// maxServedBy names; the rest are counted as otherInstances.
	servedBy map[string]int64
}

// maxServedBy bounds the instances an op's summary names.
const maxServedBy = 32

// otherInstances counts the instances past maxServedBy.
const otherInstances = "(other)"

func newRecorder() *recorder {
	return &recorder{
		all: newHist(), window: newHist(), ops: map[string]*opRecord{},
		errKinds: map[string]int64{}, hops: map[string]map[string]int64{},
	}
}

func (r *recorder) op(name string) *opRecord {
	o := r.ops[name]
	if o == nil {
		o = &opRecord{hist: newHist()}
		r.ops[name] = o
	}
	return o
}

// arrival counts an arrival whose time came: sent, or not sent because
// MaxInFlight requests were already waiting.
func (r *recorder) arrival(sent bool) {
	r.mu.Lock()
	r.due++
	if sent {
		r.sent++
	} else {
		r.notSent++
	}
	r.mu.Unlock()
}

// add counts the end of one arrival's request: every arrival that was sent
// ends in exactly one add.
func (r *recorder) add(res result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.op(res.op)
	r.done++
	o.sent++
	if !res.due.IsZero() {
		o.outcomes = append(o.outcomes, outcome{due: res.due, ok: res.ok()})
	}
	if res.header != nil {
		r.answered++
		o.countServedBy(res.header.Get("X-Served-By"))
		for _, h := range Hops() {
			v := res.header.Get(h.Header)
			if v == "" {
				continue
			}
			switch {
			case !h.Node:
				v = firstWord(v)
			case h.Header == "X-Served-By":
				// At stage 10 the gateway names itself first, then
				// every service instance the request reached: the
				// table is of app nodes; the instances are per op.
				v, _, _ = strings.Cut(v, ",")
			}
			m := r.hops[h.Header]
			if m == nil {
				m = map[string]int64{}
				r.hops[h.Header] = m
			}
			m[v]++
		}
	}
	if !res.ok() {
		r.errs++
		r.winErrs++
		o.errs++
		r.errKinds[errorKind(res.status, res.err)]++
		return
	}
	r.ok++
	o.ok++
	record(r.all, res.latency)
	record(r.window, res.latency)
	record(o.hist, res.latency)
}

// countServedBy counts each instance of an X-Served-By value ("app-1,
// content-2" at stage 10: the rpc trail's names, joined by ", ").
func (o *opRecord) countServedBy(v string) {
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if o.servedBy == nil {
			o.servedBy = map[string]int64{}
		}
		if _, ok := o.servedBy[name]; !ok && len(o.servedBy) >= maxServedBy {
			name = otherInstances
		}
		o.servedBy[name]++
	}
}

// firstWord is "HIT" of "HIT from edge-1", upper case.
func firstWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return strings.ToUpper(strings.TrimRight(f[0], ",;"))
}

// errorKind groups a failure: by status code, or by what went wrong on the
// connection, so that "the database is down" (503) and "the app is down"
// (connection refused) read differently.
func errorKind(status int, err error) string {
	if err == nil {
		return fmt.Sprintf("status %d %s", status, http.StatusText(status))
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed early"
	case errors.Is(err, errBadAnswer):
		return "bad answer"
	}
	msg := err.Error()
	if len(msg) > 60 {
		msg = msg[:60] + "..."
	}
	return "other: " + msg
}

// errBadAnswer marks a 2xx answer whose body was not what the API promises.
var errBadAnswer = errors.New("bad answer")

// progress is the live figures of the progress line.
type progress struct {
	due, sent, notSent, done, ok, errs int64
	winOK, winErrs                     int64
	p50, p99                           float64 // ms, over the last interval
}

// inFlight is the arrivals sent and not yet ended.
func (p progress) inFlight() int64 { return p.sent - p.done }

// line is the progress line: what was due and what became of it, then the
// last interval's throughput and latency. During a stall due, sent and in
// flight keep climbing (the load is open loop) while done stands still.
func (p progress) line(elapsed, interval time.Duration, maxInFlight int) string {
	line := fmt.Sprintf("%5.1fs  due %d  sent %d  in flight %d  done %d (ok %d, errors %d)  now: %d ok/s, p50 %s p99 %s",
		elapsed.Seconds(), p.due, p.sent, p.inFlight(), p.done, p.ok, p.errs,
		int64(float64(p.winOK)/interval.Seconds()), fmtMS(p.p50), fmtMS(p.p99))
	if p.winErrs > 0 {
		line += fmt.Sprintf(", %d errors", p.winErrs)
	}
	if p.notSent > 0 {
		line += fmt.Sprintf("  NOT SENT %d (over --max-in-flight %d)", p.notSent, maxInFlight)
	}
	return line
}

// takeWindow returns the live figures and starts a new interval.
func (r *recorder) takeWindow() progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := progress{due: r.due, sent: r.sent, notSent: r.notSent, done: r.done, ok: r.ok, errs: r.errs,
		winOK: r.window.TotalCount(), winErrs: r.winErrs}
	if p.winOK > 0 {
		p.p50 = float64(r.window.ValueAtQuantile(50)) / 1000
		p.p99 = float64(r.window.ValueAtQuantile(99)) / 1000
	}
	r.window.Reset()
	r.winErrs = 0
	return p
}

// Summary is the outcome of a run, printed by Print and written by
// `node load --json`.
type Summary struct {
	Target   string    `json:"target"`
	Started  time.Time `json:"started"`
	Duration float64   `json:"duration_s"`
	// Rate is the arrival rate asked for, per second; Users the users
	// signed up before the run; Mix the operations' weights.
	Rate  float64 `json:"rate"`
	Users int     `json:"users"`
	Mix   string  `json:"mix"`
	// Due counts the arrivals whose time came during the run: Sent of them
	// were sent, NotSent were not because MaxInFlight requests were
	// already waiting (the stack was slower than the rate, by a lot).
	// Every sent request ended before the summary: OK the 2xx ones, Errors
	// the others. An arrival is one request (a post-image arrival, a post
	// and its upload, counts once).
	Due     int64 `json:"due"`
	Sent    int64 `json:"sent"`
	NotSent int64 `json:"not_sent"`
	OK      int64 `json:"ok"`
	Errors  int64 `json:"errors"`
	// Throughput is successful requests per second.
	Throughput float64 `json:"throughput"`
	// Latency is of successful requests, measured from the moment each
	// was due to be sent (so a stalled stack shows as latency, not as a
	// lower rate).
	Latency Latency `json:"latency"`
	// Ops breaks the figures down by operation.
	Ops map[string]OpSummary `json:"ops"`
	// ErrorKinds counts failures by kind: "status 503 Service
	// Unavailable", "timeout", "connection refused", ...
	ErrorKinds map[string]int64 `json:"error_kinds"`
	// Answered counts the requests that got an HTTP answer, whatever its
	// status (the others failed on the connection).
	Answered int64 `json:"answered"`
	// Hops counts answers by the value of each header of Hops, keyed by
	// the header: {"X-Store": {"db-1": 40, "replica-1": 310}, "X-App-Cache":
	// {"HIT": 200, "MISS": 150}}. A header no answer carried is absent;
	// answers without it are Answered minus the header's counts (X-Store
	// is missing where the app cache answered, and X-Cache where no edge
	// is on the path). X-Served-By's table counts its first name, the app
	// node (stage 10's gateway lists the service instances after it:
	// those are counted per op, in OpSummary.ServedBy).
	Hops map[string]map[string]int64 `json:"hops"`
	// ServedBy, LB, AppCache and Edge are Hops' tables of X-Served-By,
	// X-LB, X-App-Cache and X-Cache, kept under the names they had before
	// Hops (callers and JSON readers of earlier runs use them).
	ServedBy map[string]int64 `json:"served_by"`
	LB       map[string]int64 `json:"lb"`
	AppCache map[string]int64 `json:"app_cache"`
	Edge     map[string]int64 `json:"edge"`
	// ReadYourWrites is present when the run checked it.
	ReadYourWrites *RYWSummary `json:"read_your_writes,omitempty"`
	// Writes is the read-back of every acknowledged write at the end.
	Writes *WritesSummary `json:"writes,omitempty"`
	// Tips is present when the mix has tips.
	Tips *TipsSummary `json:"tips,omitempty"`
}

// OpSummary is one operation's share of a run.
type OpSummary struct {
	Sent    int64   `json:"sent"`
	OK      int64   `json:"ok"`
	Errors  int64   `json:"errors"`
	Latency Latency `json:"latency"`
	// LongestOutage is the op's worst outage in milliseconds: the longest
	// stretch in which every arrival of it failed, from the due time of
	// the first failed one to that of the next success (or the run's
	// end). 0 when none failed. Kill a service under load and this says
	// how long its operations stopped, and that the others did not.
	LongestOutage float64 `json:"longest_outage_ms"`
	// ServedBy counts the instances named by the answers' X-Served-By
	// (each name of a stage-10 trail once per answer), at most 32 names;
	// "(other)" counts the rest.
	ServedBy map[string]int64 `json:"served_by,omitempty"`
}

// RYWSummary reports the read-your-writes checks: after a user's write
// was acknowledged, that user's next arrival read it back.
type RYWSummary struct {
	Checks     int64 `json:"checks"`
	Violations int64 `json:"violations"`
	// Unchecked are writes not read back: the run ended before the user's
	// next arrival, every read back failed (an error is no answer: it is
	// retried on the next arrival), or it could not tell (a comment list
	// at its display limit).
	Unchecked int64    `json:"unchecked"`
	Examples  []string `json:"examples,omitempty"`
}

// WritesSummary reports the read-back at the end of every post and comment
// acknowledged with 201 during the run.
type WritesSummary struct {
	Acknowledged int64 `json:"acknowledged"`
	Verified     int64 `json:"verified"`
	// Lost are acknowledged writes that are not there: the number issue 6
	// (replication and failover) must keep at zero.
	Lost int64 `json:"lost"`
	// Unverified could not be read back (errors after retries).
	Unverified int64    `json:"unverified"`
	Examples   []string `json:"examples,omitempty"`
}

// summary fills the recorder's part of a Summary; end is the run's end,
// which ends an outage no success ended.
func (r *recorder) summary(s *Summary, end time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Due, s.Sent, s.NotSent, s.OK, s.Errors = r.due, r.sent, r.notSent, r.ok, r.errs
	s.Answered = r.answered
	if s.Duration > 0 {
		s.Throughput = float64(r.ok) / s.Duration
	}
	s.Latency = LatencyOf(r.all)
	s.Ops = map[string]OpSummary{}
	for name, o := range r.ops {
		s.Ops[name] = OpSummary{Sent: o.sent, OK: o.ok, Errors: o.errs, Latency: LatencyOf(o.hist),
			LongestOutage: float64(longestOutage(o.outcomes, end)) / float64(time.Millisecond), ServedBy: o.servedBy}
	}
	s.ErrorKinds = clone(r.errKinds)
	s.Hops = make(map[string]map[string]int64, len(r.hops))
	for h, m := range r.hops {
		s.Hops[h] = clone(m)
	}
	s.ServedBy = clone(r.hops["X-Served-By"])
	s.LB = clone(r.hops["X-LB"])
	s.AppCache = clone(r.hops["X-App-Cache"])
	s.Edge = clone(r.hops["X-Cache"])
}

func clone(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Print writes the summary for a person.
func (s *Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "\n%s: %.1fs at %.0f/s asked, %d users, mix %s\n", s.Target, s.Duration, s.Rate, s.Users, s.Mix)
	fmt.Fprintf(w, "  requests    %d due, %d sent, %d ok, %d errors (%.2f%%)", s.Due, s.Sent, s.OK, s.Errors, pct(s.Errors, s.Sent))
	if s.NotSent > 0 {
		fmt.Fprintf(w, ", %d NOT SENT (over --max-in-flight: the stack fell far behind)", s.NotSent)
	}
	fmt.Fprintf(w, "\n  throughput  %.1f ok/s\n", s.Throughput)
	l := s.Latency
	fmt.Fprintf(w, "  latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (ok requests, from when each was due)\n",
		fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999), fmtMS(l.Max))

	fmt.Fprintf(w, "\n  %-10s %8s %8s %8s %9s %9s %9s %13s\n", "op", "sent", "ok", "errors", "p50", "p99", "max", "worst outage")
	for _, op := range append(mixOps(), OpVerify, OpLogin) {
		o, ok := s.Ops[op]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "  %-10s %8d %8d %8d %9s %9s %9s %13s\n", op, o.Sent, o.OK, o.Errors,
			fmtMS(o.Latency.P50), fmtMS(o.Latency.P99), fmtMS(o.Latency.Max), fmtMS(o.LongestOutage))
	}
	if len(s.ErrorKinds) > 0 {
		fmt.Fprintf(w, "\n  errors by kind\n")
		for _, k := range sortedByCount(s.ErrorKinds) {
			fmt.Fprintf(w, "    %-40s %8d  %5.1f%%\n", k, s.ErrorKinds[k], pct(s.ErrorKinds[k], s.Errors))
		}
	}
	if len(s.Hops) > 0 {
		fmt.Fprintf(w, "\n  answers served by each node, hop by hop (from the headers the nodes set)\n")
	}
	for _, h := range Hops() {
		title := h.Title + " (" + h.Header + ")"
		if h.Node {
			title = "answered by " + title
		}
		printShares(w, title, s.Hops[h.Header], s.Answered)
	}
	s.printTrails(w)
	if r := s.ReadYourWrites; r != nil {
		fmt.Fprintf(w, "\n  read-your-writes  %d checks, %d violations, %d unchecked\n", r.Checks, r.Violations, r.Unchecked)
		for _, e := range r.Examples {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
	if t := s.Tips; t != nil {
		fmt.Fprintf(w, "\n  tips  %d ok, %d outcome unknown, %d retried with the same key, %d settled by a retry; DOUBLE CHARGES %d (%d checked, %d unchecked), %d unsettled\n",
			t.OK, t.OutcomeUnknown, t.Retries, t.Settled, t.DoubleCharges, t.Checks, t.Unchecked, t.Unsettled)
		for _, e := range t.Examples {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
	if wr := s.Writes; wr != nil {
		fmt.Fprintf(w, "\n  acknowledged writes  %d, read back %d, LOST %d, unverified %d\n", wr.Acknowledged, wr.Verified, wr.Lost, wr.Unverified)
		for _, e := range wr.Examples {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
}

// printTrails prints, when answers named instances besides the app nodes
// (stage 10's gateway names every service instance a request touched),
// which instances served each op: "search  app-1 120, search-1 118".
func (s *Summary) printTrails(w io.Writer) {
	apps := s.Hops["X-Served-By"]
	trails := false
	for _, o := range s.Ops {
		for name := range o.ServedBy {
			trails = trails || apps[name] == 0
		}
	}
	if !trails {
		return
	}
	fmt.Fprintf(w, "\n  instances by operation (each name of X-Served-By)\n")
	for _, op := range append(mixOps(), OpVerify, OpLogin) {
		o, ok := s.Ops[op]
		if !ok || len(o.ServedBy) == 0 {
			continue
		}
		var parts []string
		for _, k := range sortedByCount(o.ServedBy) {
			parts = append(parts, fmt.Sprintf("%s %d", k, o.ServedBy[k]))
		}
		fmt.Fprintf(w, "    %-10s %s\n", op, strings.Join(parts, ", "))
	}
}

// printShares prints one header's table: each value's count and share of
// the answers, and the answers that did not carry the header.
func printShares(w io.Writer, title string, m map[string]int64, answered int64) {
	if len(m) == 0 {
		return
	}
	var total int64
	for _, v := range m {
		total += v
	}
	fmt.Fprintf(w, "\n  %s\n", title)
	for _, k := range sortedByCount(m) {
		fmt.Fprintf(w, "    %-24s %8d  %5.1f%%\n", k, m[k], pct(m[k], answered))
	}
	if none := answered - total; none > 0 {
		fmt.Fprintf(w, "    %-24s %8d  %5.1f%%\n", "(not set)", none, pct(none, answered))
	}
}

func sortedByCount(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return keys
}

func pct(n, of int64) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// fmtMS renders milliseconds with a precision that suits the size.
func fmtMS(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	default:
		return fmt.Sprintf("%.2fs", ms/1000)
	}
}
