// Package faultrun is issue 14's fault run: the stage-8 stack on eight
// hosts made of network namespaces (internal/netns), a writer of posts and
// sign-ups through the lb, and a fault on a schedule (kill -9 of the
// primary, SIGSTOP of a replica, a partition of the primary, kill -9 of an
// app, of the cache, of the worker), each undone a few seconds later as a
// person would: the node restarted with its data directory and flags,
// continued, or healed. Every request's outcome and every fault's instant
// are recorded; at the end the store, the store nodes' checksums and the
// worker's e-mails are checked against them.
//
// bench/faults runs the full form and prints the table;
// internal/e2e runs a short form as a test of the correctness outcomes.
// It needs root (network namespaces) and the node binary.
package faultrun

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/scalestack/scalestack/internal/poll"
	"github.com/scalestack/scalestack/internal/storewatch"
)

// Config is one fault run.
type Config struct {
	// NodeBin is the path of the node binary. Required.
	NodeBin string
	// Dir holds the nodes' data directories (Dir/data/NAME) and logs
	// (Dir/logs/NAME.log). Required; the caller removes it.
	Dir string
	// NetName names the hosts (internal/netns: 1 to 6 of a-z0-9). Default
	// "faults". Hosts of this name left by a dead process are removed
	// first.
	NetName string
	// Run numbers the run, from 1; the paused replica and the killed app
	// alternate with it.
	Run int
	// Duration is how long the writer writes. Default 95s.
	Duration time.Duration
	// First is when the first fault comes, after the writer starts;
	// Every is the time between two faults. Defaults 10s and 15s: the
	// issue's six faults then fit in 95 s with 10 s after the last.
	First, Every time.Duration
	// Hold is how long a fault lasts before it is undone. Default 5s.
	Hold time.Duration
	// Faults is the schedule, in order. Default AllFaults.
	Faults []Fault
	// Rate is posts per second. Default 14.
	Rate float64
	// SignupRate is sign-ups per second. Default 1.
	SignupRate float64
	// Users is the pool of logged-in users signed up before the run.
	// Default 20.
	Users int
	// Timeout bounds one request. Default 10s: longer than the app's own
	// store deadline (5 s), so that the table shows what the stack answered
	// (a 503 with Retry-After) rather than the client giving up first.
	Timeout time.Duration
	// Settle bounds each end check's wait (nodes ready, checksums equal,
	// every e-mail written). Default 90s: a job held by a killed worker
	// is redelivered after JetStream's 60 s ack wait.
	Settle time.Duration
	// Progress receives a line per second and per event. Nil: none.
	Progress func(format string, args ...any)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Duration, 95*time.Second)
	def(&c.First, 10*time.Second)
	def(&c.Every, 15*time.Second)
	def(&c.Hold, 5*time.Second)
	def(&c.Timeout, 10*time.Second)
	def(&c.Settle, 90*time.Second)
	if c.NetName == "" {
		c.NetName = "faults"
	}
	if c.Run == 0 {
		c.Run = 1
	}
	if c.Faults == nil {
		c.Faults = AllFaults
	}
	if c.Rate == 0 {
		c.Rate = 14
	}
	if c.SignupRate == 0 {
		c.SignupRate = 1
	}
	if c.Users == 0 {
		c.Users = 20
	}
	if c.Progress == nil {
		c.Progress = func(string, ...any) {}
	}
}

// Validate checks the configuration; errors name the field.
func (c *Config) Validate() error {
	switch {
	case c.NodeBin == "":
		return errors.New("faultrun: NodeBin is required")
	case c.Dir == "":
		return errors.New("faultrun: Dir is required")
	case c.Hold >= c.Every:
		return fmt.Errorf("faultrun: Hold %v must be shorter than Every %v: a fault is undone before the next", c.Hold, c.Every)
	case c.Rate <= 0 || c.SignupRate < 0 || c.Users < 1:
		return errors.New("faultrun: Rate and Users must be positive, SignupRate not negative")
	}
	return nil
}

// Run starts the cluster, runs the writer and the faults, checks the end
// state and removes everything it made, also when ctx ends (Ctrl-C). The
// error says the run could not be made (no cluster, ctx ended); what went
// wrong inside a run is in the Result (Problems, TargetMisses).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logf := cfg.Progress
	c, err := startCluster(ctx, cfg.NodeBin, cfg.NetName, cfg.Dir, logf)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := c.Close(); err != nil {
			logf("removing the hosts: %v", err)
		}
	}()
	watch := storewatch.Watch(watchedNodes(c.StoreNodes()), pollEvery)
	defer watch.Stop()

	prefix := fmt.Sprintf("f%d%s", cfg.Run, randomID(3))
	w := newWriter(writerConfig{Target: c.LB(), Rate: cfg.Rate, SignupRate: cfg.SignupRate, Users: cfg.Users, Timeout: cfg.Timeout, Prefix: prefix})
	defer w.transport.CloseIdleConnections()
	if err := w.signUpPool(ctx); err != nil {
		return nil, fmt.Errorf("sign up the users: %w", err)
	}
	logf("%d users signed up (%s...); writing %.0f posts/s and %.1f sign-ups/s through %s for %v",
		cfg.Users, prefix, cfg.Rate, cfg.SignupRate, c.LB(), cfg.Duration)

	r := &Result{Run: cfg.Run, Prefix: prefix, Logs: cfg.Dir}
	r.Start = time.Now()
	w.start()
	stopProgress := progress(w, watch, r.Start, logf)

	// The faults run beside the writer; each is undone after Hold, and
	// the node's readiness afterwards is watched in the background.
	var events []*Event
	var evMu sync.Mutex
	var readyWG sync.WaitGroup
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		for i, f := range cfg.Faults {
			due := r.Start.Add(cfg.First + time.Duration(i)*cfg.Every)
			if !due.Before(r.Start.Add(cfg.Duration)) {
				logf("fault %s at %v is past the run's end: not made", f, due.Sub(r.Start))
				continue
			}
			if !sleepUntil(ctx, due) {
				return
			}
			ev := &Event{Fault: f}
			evMu.Lock()
			events = append(events, ev)
			evMu.Unlock()
			n, epoch, err := c.victim(ctx, f, cfg.Run)
			if err != nil {
				ev.At, ev.Err = time.Now(), err.Error()
				logf("+%.1fs %s: no victim: %v", time.Since(r.Start).Seconds(), f, err)
				continue
			}
			ev.Node, ev.Epoch = n.Name, epoch
			at, err := c.inject(f, n)
			ev.At = at
			if err != nil {
				ev.Err = err.Error()
			}
			logf("+%.1fs FAULT %s: %s (epoch %d) %s", at.Sub(r.Start).Seconds(), f, n.Name, epoch, ev.Err)
			if !sleepUntil(ctx, at.Add(cfg.Hold)) {
				c.undo(f, n) // leave nothing paused or cut off for Close
				return
			}
			err = c.undo(f, n)
			ev.Back = time.Now()
			if err != nil {
				ev.Err = strings.TrimPrefix(ev.Err+"; undo: "+err.Error(), "; ")
			}
			logf("+%.1fs BACK %s: %s %s", ev.Back.Sub(r.Start).Seconds(), f, n.Name, ev.Err)
			readyWG.Go(func() {
				if poll.Until(ctx, cfg.Settle, pollEvery, func() error { return ready(ctx, n) }) == nil {
					evMu.Lock()
					ev.Ready = time.Now()
					evMu.Unlock()
					logf("+%.1fs READY %s %.1fs after it was back", time.Since(r.Start).Seconds(), n.Name, time.Since(ev.Back).Seconds())
				}
			})
		}
	}()

	ended := sleepUntil(ctx, r.Start.Add(cfg.Duration))
	w.stop()
	r.End = time.Now()
	<-faultsDone
	stopProgress()
	if !ended || ctx.Err() != nil {
		return nil, fmt.Errorf("fault run %d interrupted: %w", cfg.Run, ctx.Err())
	}
	logf("writer stopped at +%.1fs; checking the end state", r.End.Sub(r.Start).Seconds())

	if err := poll.Until(ctx, cfg.Settle, pollEvery, func() error {
		for _, n := range c.nodes {
			if err := ready(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		r.Notes = append(r.Notes, fmt.Sprintf("not every node ready %v after the writer stopped: %v", cfg.Settle, err))
	}
	readyWG.Wait()
	r.Converged, r.Checksums = convergence(ctx, c, cfg.Settle)
	logf("checksums: %s", r.Checksums)
	view, err := readStore(ctx, c, prefix, cfg.Settle)
	if err != nil {
		return nil, fmt.Errorf("fault run %d: read the store at the end: %w", cfg.Run, err)
	}
	mails, err := waitMails(ctx, c, view, cfg.Settle)
	if err != nil {
		return nil, fmt.Errorf("fault run %d: read the e-mails: %w", cfg.Run, err)
	}
	watch.Stop()
	for _, ev := range events {
		r.Events = append(r.Events, *ev)
	}
	outs := w.all()
	r.evaluate(outs, w.rywCounts(), view, mails, watch)
	if err := writeRecord(filepath.Join(cfg.Dir, "record.jsonl"), r, outs); err != nil {
		logf("writing the run's record: %v", err)
	}
	return r, nil
}

// writeRecord writes the run's events and every request's outcome, one
// JSON object a line, beside the nodes' logs: the evidence behind a table.
func writeRecord(path string, r *Result, outs []Outcome) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, ev := range r.Events {
		enc.Encode(map[string]any{"event": ev})
	}
	for _, o := range outs {
		enc.Encode(o)
	}
	return f.Close()
}

// waitMails waits until every user in the store has a welcome e-mail, up
// to timeout, and returns the e-mails by address.
func waitMails(ctx context.Context, c *Cluster, view storeView, timeout time.Duration) (map[string]int, error) {
	var mails map[string]int
	var readErr error
	poll.Until(ctx, timeout, pollEvery, func() error {
		mails, readErr = welcomeMails(c)
		if readErr != nil {
			return nil // not a wait: the folder cannot be read
		}
		missing := 0
		for _, addr := range view.users {
			if mails[addr] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d users without a welcome e-mail", missing)
		}
		return nil
	})
	return mails, readErr
}

// progress prints a line per second: the writes answered in the last
// second and the primary as the store nodes say.
func progress(w *writer, watch *storewatch.Epochs, start time.Time, logf func(string, ...any)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				po, pf, so, sf := w.since(now.Add(-time.Second))
				logf("+%4.1fs posts %2d ok %2d failed, sign-ups %d ok %d failed; primary %s",
					now.Sub(start).Seconds(), po, pf, so, sf, watch.Now())
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

func randomID(n int) string {
	const digits = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)]
	}
	return string(b)
}

// Result is what one run measured.
type Result struct {
	Run    int
	Prefix string // of the run's handles and titles
	Logs   string // Config.Dir: logs/NAME.log of every node
	// Start and End are the writer's.
	Start, End time.Time
	Events     []Event
	// Faults are the measurements of each event, in order.
	Faults []FaultResult

	Posts, Signups Counts
	// FailedCommitted counts writes answered with an error (or not at
	// all) that the store holds anyway.
	FailedCommitted Counts
	// AckedLost counts writes acknowledged (201) that the store does not
	// hold at the end. Want 0.
	AckedLost Counts
	// AppliedTwice counts posts the store holds more than once (one
	// request, one unique title). Want 0.
	AppliedTwice int
	RYW          RYW
	// Unauthorized counts 401 answers: a logged-in user logged out.
	Unauthorized int
	// Converged: the store nodes' checksums agree at one LSN.
	Converged bool
	Checksums string
	// Welcome e-mails: users in the store, those without an e-mail, with
	// more than one, and e-mails to nobody the store holds.
	Users, MailsLost, MailsDuplicated, MailsStray int
	// FailedSignupsCommitted is how many sign-ups answered with an error
	// committed anyway; FailedSignupsMailed how many of those got their
	// welcome e-mail.
	FailedSignupsCommitted, FailedSignupsMailed int
	// TwoPrimaries lists epochs in which two nodes said they were primary.
	TwoPrimaries []string
	// Before counts the errors before the first fault, by kind.
	Before map[string]int
	Notes  []string
	// Examples describe the writes behind the counts: each acknowledged
	// write lost, post applied twice, failed write that committed anyway,
	// e-mail missing, duplicated or stray (the first 20).
	Examples []string
}

// Counts is writes of one kind: acknowledged and failed, or, for the
// derived counts, posts and sign-ups.
type Counts struct{ OK, Failed int }

// FaultResult is what was measured during one fault: from its instant to
// the next fault's (or the writer's end).
type FaultResult struct {
	Event
	// FirstAck is the time from the fault to the first post acknowledged
	// after it (for a primary fault: by another store node than the one
	// hit, from X-Store). -1: none before the writer stopped.
	FirstAck time.Duration
	// FailedWrites is posts and sign-ups that failed in the window.
	FailedWrites int
	// Errors counts every failed request in the window (posts, sign-ups,
	// read-backs, logins) by status, or "timeout", "refused", ...
	Errors map[string]int
	// NewEpochs are the epochs first seen in the window: one for a
	// primary fault, none for the others.
	NewEpochs []uint64
}

// evaluate fills the result from the outcomes, the store, the e-mails and
// the epochs seen.
func (r *Result) evaluate(outs []Outcome, ryw RYW, view storeView, mails map[string]int, watch *storewatch.Epochs) {
	r.RYW = ryw
	sort.Slice(outs, func(i, j int) bool { return outs[i].End.Before(outs[j].End) })
	r.Before = map[string]int{}
	for i, ev := range r.Events {
		to := r.End
		if i+1 < len(r.Events) {
			to = r.Events[i+1].At
		}
		fr := FaultResult{Event: ev, FirstAck: -1, Errors: map[string]int{}}
		for _, o := range outs {
			if o.Op == OpPost && o.OK() && !o.End.Before(ev.At) && (!ev.Fault.primaryFault() || o.Store != ev.Node) {
				fr.FirstAck = o.End.Sub(ev.At)
				break
			}
		}
		for _, o := range outs {
			if o.End.Before(ev.At) || !o.End.Before(to) || o.OK() {
				continue
			}
			fr.Errors[o.Failure()]++
			if o.Write() {
				fr.FailedWrites++
			}
		}
		end := to
		if i+1 == len(r.Events) {
			end = time.Now() // the watch ran through the end checks
		}
		fr.NewEpochs = watch.FirstSeenIn(ev.At, end)
		r.Faults = append(r.Faults, fr)
	}
	for _, o := range outs {
		if len(r.Events) > 0 && !o.OK() && o.End.Before(r.Events[0].At) {
			r.Before[o.Failure()]++
		}
		if o.Status == 401 {
			r.Unauthorized++
		}
	}

	twice := map[string]bool{} // one count per title
	for _, o := range outs {
		switch o.Op {
		case OpPost:
			n := view.postsByTitle[o.Key]
			if n > 1 && !twice[o.Key] {
				twice[o.Key] = true
				r.AppliedTwice++
				r.example("post %q is in the store %d times", o.Key, n)
			}
			if o.OK() {
				r.Posts.OK++
				if view.postsByID[o.ID] != o.Key {
					r.AckedLost.OK++
					r.example("post %q (id %s) acknowledged at %s by %s/%s is not in the store", o.Key, o.ID, o.End.Format("15:04:05.000"), o.App, o.Store)
				}
			} else {
				r.Posts.Failed++
				if n > 0 {
					r.FailedCommitted.OK++
					r.example("post %q answered %s at %s (sent %s, via %s) is in the store anyway", o.Key, o.Failure(), o.End.Format("15:04:05.000"), o.Start.Format("15:04:05.000"), o.App)
				}
			}
		case OpSignup:
			_, exists := view.users[o.Key]
			if o.OK() {
				r.Signups.OK++
				if !exists {
					r.AckedLost.Failed++
					r.example("sign-up of %s acknowledged at %s by %s is not in the store", o.Key, o.End.Format("15:04:05.000"), o.App)
				}
			} else {
				r.Signups.Failed++
				if exists {
					r.FailedCommitted.Failed++
					r.FailedSignupsCommitted++
					r.example("sign-up of %s answered %s at %s (sent %s, via %s) is in the store anyway", o.Key, o.Failure(), o.End.Format("15:04:05.000"), o.Start.Format("15:04:05.000"), o.App)
					if mails[view.users[o.Key]] > 0 {
						r.FailedSignupsMailed++
					}
				}
			}
		}
	}

	r.Users = len(view.users)
	known := map[string]bool{}
	for h, addr := range view.users {
		known[addr] = true
		switch n := mails[addr]; {
		case n == 0:
			r.MailsLost++
			r.example("user %s (%s) is in the store and got no welcome e-mail", h, addr)
		case n > 1:
			r.MailsDuplicated++
			r.example("user %s (%s) got %d welcome e-mails", h, addr, n)
		}
	}
	for addr, n := range mails {
		if !known[addr] {
			r.MailsStray += n
			r.example("%d welcome e-mails to %s, whom the store does not hold", n, addr)
		}
	}
	for e, nodes := range watch.Primaries() {
		if len(nodes) > 1 {
			r.TwoPrimaries = append(r.TwoPrimaries, fmt.Sprintf("epoch %d: %v", e, nodes))
		}
	}
}

// Tail returns the last lines of node's log (NATS chatter left out).
func (r *Result) Tail(node string, lines int) string {
	return tailLog(filepath.Join(r.Logs, "logs", node+".log"), lines)
}

func (r *Result) example(format string, args ...any) {
	if len(r.Examples) < 20 {
		r.Examples = append(r.Examples, fmt.Sprintf(format, args...))
	}
}

// Problems lists what went wrong with correctness (issue 14: nothing
// acknowledged lost, nothing applied twice, users read their writes, the
// store nodes agree, nobody logged out, every effect once), and faults
// that could not be made or after which no write was acknowledged again.
// Empty is a correct run. Speed is in TargetMisses.
func (r *Result) Problems() []string {
	var p []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	add(r.AckedLost.OK+r.AckedLost.Failed > 0, "%d acknowledged posts and %d acknowledged sign-ups lost", r.AckedLost.OK, r.AckedLost.Failed)
	add(r.AppliedTwice > 0, "%d posts applied twice", r.AppliedTwice)
	add(r.RYW.Violations > 0, "%d read-your-writes violations", r.RYW.Violations)
	add(!r.Converged, "store nodes not converged: %s", r.Checksums)
	add(r.Unauthorized > 0, "%d answers 401 to logged-in users", r.Unauthorized)
	add(r.MailsLost+r.MailsDuplicated+r.MailsStray > 0, "welcome e-mails: %d users without, %d with more than one, %d e-mails to nobody", r.MailsLost, r.MailsDuplicated, r.MailsStray)
	add(len(r.TwoPrimaries) > 0, "two primaries in one epoch: %v", r.TwoPrimaries)
	add(r.Posts.OK == 0, "no post acknowledged at all")
	for _, f := range r.Faults {
		add(f.Err != "", "%s of %s: %s", f.Fault, f.Node, f.Err)
		add(f.FirstAck < 0, "%s of %s: no post acknowledged after it", f.Fault, f.Node)
		add(f.Back.IsZero() && f.Err == "", "%s of %s: never undone", f.Fault, f.Node)
		add(!f.Back.IsZero() && f.Ready.IsZero(), "%s of %s: not ready again after it was back", f.Fault, f.Node)
	}
	return p
}

// TargetMisses lists the speed and stability targets missed:
// every primary failover under 3 s, exactly one new epoch per primary
// fault (no second failover when the old primary returns or the partition
// heals) and none for the other faults.
func (r *Result) TargetMisses() []string {
	var p []string
	for _, f := range r.Faults {
		if f.Fault.primaryFault() && f.FirstAck > 3*time.Second {
			p = append(p, fmt.Sprintf("%s of %s: first write acknowledged after %.1f s (target < 3 s)", f.Fault, f.Node, f.FirstAck.Seconds()))
		}
		want := 0
		if f.Fault.primaryFault() {
			want = 1
		}
		if len(f.NewEpochs) != want {
			p = append(p, fmt.Sprintf("%s of %s: %d new epochs %v (want %d)", f.Fault, f.Node, len(f.NewEpochs), f.NewEpochs, want))
		}
	}
	return p
}

// seconds formats a duration as seconds with one decimal, "none" for -1.
func seconds(d time.Duration) string {
	if d < 0 {
		return "none"
	}
	return fmt.Sprintf("%.2f", math.Round(d.Seconds()*100)/100)
}
