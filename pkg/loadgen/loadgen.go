// Package loadgen is the load generator behind `node load`: an open-loop
// generator that sends requests to the blog's JSON API and pages at a
// constant arrival rate, as a crowd of users would, and reports what the
// stack did with them: throughput, latency percentiles from an HDR
// histogram, errors by kind, which node answered at each hop (edge, lb,
// app, store: the headers of Hops), cache and edge hits, whether users
// saw their own writes and every acknowledged write survived, each
// operation's worst outage (outage.go: kill a service under load and see
// which operations stopped, and for how long), and whether a tip retried
// after an unknown outcome was charged once (tip.go).
//
// Open loop, coordinated-omission free: arrivals are scheduled at fixed
// times (start + i/rate) whatever the stack does, and each request's
// latency is measured from the time it was due, not from when it went out.
// A stalled stack therefore shows as latency, instead of silently lowering
// the rate as a closed loop (N workers, each waiting for its answer) does.
// In-flight requests are bounded (MaxInFlight): an arrival that finds the
// bound reached is counted as not sent, which the summary reports loudly.
// The progress line counts arrivals as they fall due, so a stalled stack
// reads as due, sent and in flight climbing while done stands still.
//
// Why not vegeta's attacker for the pacing: its Targeter produces each
// request without seeing any answer, and its results do not say which
// user sent them; this generator's users are stateful (a cookie jar each,
// the ids of posts they and others wrote, the last write they must read
// back), so an arrival's request depends on earlier answers. A timer loop
// with a semaphore is a few lines and keeps that state in one place; HDR
// histograms (github.com/HdrHistogram/hdrhistogram-go) do the statistics.
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a load run.
type Config struct {
	// Target is the base URL of the blog (an app, lb or edge node), e.g.
	// http://127.0.0.3:8081. Required.
	Target string
	// Rate is arrivals per second, whatever the stack does. Default 50.
	Rate float64
	// Duration of the measured run, after sign-up. Default 30s.
	Duration time.Duration
	// Users are signed up before the run; every arrival acts as one of
	// them, picked at random. Default 20. Sign-up costs a bcrypt hash on
	// the app, so hundreds take a few seconds.
	Users int
	// Mix is the share of each operation. Default DefaultMix.
	Mix Mix
	// ReadYourWrites makes a user's next arrival after an acknowledged
	// write read that write back and report it if missing.
	ReadYourWrites bool
	// VerifyWrites reads back every acknowledged post and comment at the
	// end and counts the lost ones. Default true in DefaultConfig.
	VerifyWrites bool
	// Timeout bounds one request. Default 5s: longer is an outage, not
	// latency.
	Timeout time.Duration
	// MaxInFlight bounds the requests waiting for an answer. Default 1000:
	// at 50/s and a 5s timeout at most 250 can wait, so the bound only
	// bites when the stack has fallen far behind a high rate.
	MaxInFlight int
	// Progress receives a live line every ProgressInterval (redrawn in
	// place on a terminal). Nil means none.
	Progress io.Writer
	// ProgressInterval is the period of the progress line and of its
	// "current" percentiles. Default 1s.
	ProgressInterval time.Duration
	// Seed makes the choice of operations and users repeatable; 0 picks
	// one from the clock.
	Seed uint64
}

// DefaultConfig returns the configuration of `node load` without flags
// (Target must still be set).
func DefaultConfig() Config {
	m, _ := ParseMix(DefaultMix)
	return Config{
		Rate:             50,
		Duration:         30 * time.Second,
		Users:            20,
		Mix:              m,
		VerifyWrites:     true,
		Timeout:          5 * time.Second,
		MaxInFlight:      1000,
		ProgressInterval: time.Second,
	}
}

// Validate checks the configuration; errors name the flag to change.
func (c *Config) Validate() error {
	u, err := url.Parse(c.Target)
	switch {
	case c.Target == "":
		return errors.New("loadgen: --target is required: the blog's URL, e.g. --target http://127.0.0.3:8081 (node up prints it)")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("loadgen: --target %q: want an http:// or https:// URL, e.g. http://127.0.0.3:8081", c.Target)
	case c.Rate <= 0 || c.Rate > 1e6:
		return fmt.Errorf("loadgen: --rate %v: want arrivals per second, above 0", c.Rate)
	case c.Duration <= 0:
		return errors.New("loadgen: --duration must be positive, e.g. 30s")
	case c.Users < 1 || c.Users > 100_000:
		return fmt.Errorf("loadgen: --users %d: want 1 to 100000", c.Users)
	case c.Mix.IsZero():
		return errors.New("loadgen: --mix is empty")
	case c.Timeout <= 0:
		return errors.New("loadgen: --timeout must be positive")
	case c.MaxInFlight < 1:
		return errors.New("loadgen: --max-in-flight must be at least 1")
	case c.ProgressInterval <= 0:
		return errors.New("loadgen: the progress interval must be positive")
	}
	return nil
}

// ErrTarget wraps the error of a target that does not answer as the blog.
var ErrTarget = errors.New("target does not answer")

// Run signs the users up, runs the load for Duration (or until ctx is
// done, which ends the run early with a summary of what was done), reads
// the acknowledged writes back, and returns the summary.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g, err := newGenerator(cfg)
	if err != nil {
		return nil, err
	}
	defer g.transport.CloseIdleConnections()
	if err := g.probe(ctx); err != nil {
		return nil, err
	}
	if err := g.signUp(ctx); err != nil {
		return nil, err
	}
	s := g.run(ctx)
	if cfg.Mix.Share(OpTip) > 0 {
		// As the writes below: what became of the money matters most
		// when the run was cut short.
		s.Tips = g.settleTips(context.WithoutCancel(ctx))
	}
	if cfg.VerifyWrites {
		// Read back even when ctx ended the run: that is when a person
		// most wants to know what survived.
		s.Writes = g.verifyWrites(context.WithoutCancel(ctx))
	}
	return s, nil
}

// generator is one run's state.
type generator struct {
	cfg       Config
	base      string
	transport *http.Transport
	rec       *recorder
	runID     string
	rng       *rand.Rand // the scheduler's; workers use math/rand/v2's global
	words     []string   // vocabulary of generated posts and comments
	// searchWords are the words of words that search finds posts by.
	searchWords []string

	mu        sync.Mutex
	users     []*user
	posts     []string          // known post ids, newest last, at most maxPosts
	authors   map[string]string // post id -> author's handle, of posts
	nextUser  int
	ackPosts  []string            // acknowledged posts
	ackCmts   map[string][]string // post id -> acknowledged comment ids
	ryw       RYWSummary
	tips      TipsSummary
	signupsOK atomic.Int64
	images    imageSource  // the PNGs of post-image
	nextImage atomic.Int64 // numbers the uploads, so that each image is distinct
}

// maxPosts bounds the pool of post ids reads and comments pick from.
const maxPosts = 2000

// user is one simulated person: a cookie jar, whether it must log in
// again, and with ReadYourWrites the last acknowledged write not yet read
// back.
type user struct {
	handle string
	client *http.Client
	mu     sync.Mutex
	last   *write
	// loggedOut is set when a write answered 401: the user's next arrival
	// logs in again (loggingIn is closed when that login ends), which
	// starts a new session (counted, so that late 401s of the old one are
	// ignored).
	loggedOut atomic.Bool
	loggingIn chan struct{}
	session   atomic.Int64
	// tips numbers u's tips; pendingTips (under mu) are those whose
	// outcome is unknown, retried with their keys on u's next arrivals.
	tips        atomic.Int64
	pendingTips []*tipAttempt
}

// write is an acknowledged post or comment.
type write struct {
	postID    string
	commentID string // "" for a post
	at        time.Time
}

func newGenerator(cfg Config) (*generator, error) {
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	g := &generator{
		cfg:  cfg,
		base: strings.TrimRight(cfg.Target, "/"),
		transport: &http.Transport{
			Proxy:               nil, // the stack is local; never a proxy from the environment
			DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.MaxInFlight,
			MaxIdleConnsPerHost: cfg.MaxInFlight,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		rec:     newRecorder(),
		rng:     rand.New(rand.NewPCG(seed, seed>>1|1)),
		ackCmts: map[string][]string{},
		authors: map[string]string{},
		words:   strings.Fields(corpus),
	}
	g.searchWords = searchTerms(g.words)
	// Handles are unique per run, so runs against the same stack do not
	// collide: "lg" + 5 base-36 characters + "_" + number.
	const digits = "abcdefghijklmnopqrstuvwxyz0123456789"
	id := make([]byte, 5)
	for i := range id {
		id[i] = digits[g.rng.IntN(len(digits))]
	}
	g.runID = string(id)
	return g, nil
}

// newUser returns a user with its own cookie jar on the shared transport.
func (g *generator) newUser() *user {
	g.mu.Lock()
	n := g.nextUser
	g.nextUser++
	g.mu.Unlock()
	jar, _ := cookiejar.New(nil)
	return &user{
		handle: fmt.Sprintf("lg%s_%d", g.runID, n),
		client: &http.Client{Transport: g.transport, Jar: jar, Timeout: g.cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// probe checks that the target answers as the blog before anything else,
// so that a wrong URL or a stack that is down is one clear line.
func (g *generator) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	c := &http.Client{Transport: g.transport}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/api/v1/posts", nil)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("loadgen: %w: %s: %s (is the stack up? `node up` prints the URL, `node ps` shows the nodes)", ErrTarget, g.cfg.Target, errorKind(0, err))
	}
	defer resp.Body.Close()
	var page struct {
		Posts []postJSON `json:"posts"`
	}
	switch {
	case resp.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("loadgen: %w: %s answers 503 Service Unavailable (is its database up? `node ps`)", ErrTarget, g.cfg.Target)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("loadgen: %w: GET %s/api/v1/posts answered %s: is it the blog?", ErrTarget, g.base, resp.Status)
	case json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&page) != nil:
		return fmt.Errorf("loadgen: %w: GET %s/api/v1/posts did not answer the blog's JSON", ErrTarget, g.base)
	}
	g.addPosts(page.Posts)
	return nil
}

// signUp creates the users before the run (a taken handle logs in
// instead). Sign-up is not measured: it is the cost of arriving, not of
// using the blog.
func (g *generator) signUp(ctx context.Context) error {
	began := time.Now()
	users := make([]*user, g.cfg.Users)
	var done, failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 8) // bcrypt is CPU-bound: a few at a time is as fast
	var wg sync.WaitGroup
	stop := g.ticker(func() {
		g.printf("signing up %d users: %d done", g.cfg.Users, done.Load())
	})
	for i := range users {
		u := g.newUser()
		users[i] = u
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			res := g.signupUser(ctx, u)
			if !res.ok() {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, errorKind(res.status, res.err))
			}
			done.Add(1)
		}()
	}
	wg.Wait()
	stop()
	g.printf("signed up %d users in %.1fs", g.cfg.Users-int(failed.Load()), time.Since(began).Seconds())
	g.endLine()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if f := failed.Load(); f > int64(g.cfg.Users)/2 {
		return fmt.Errorf("loadgen: %d of %d sign-ups failed (first: %v): the blog does not take users", f, g.cfg.Users, firstErr.Load())
	}
	g.mu.Lock()
	g.users = users
	g.mu.Unlock()
	return nil
}

// signupUser signs u up, or logs it in when the handle exists.
func (g *generator) signupUser(ctx context.Context, u *user) result {
	body := map[string]string{"handle": u.handle, "email": u.handle + "@load.test", "password": password}
	res, _ := g.do(ctx, u, OpSignup, time.Now(), http.MethodPost, "/api/v1/signup", body, nil)
	if res.status == http.StatusConflict {
		res, _ = g.do(ctx, u, OpSignup, time.Now(), http.MethodPost, "/api/v1/login",
			map[string]string{"handle": u.handle, "password": password}, nil)
	}
	return res
}

// password is every load user's password.
const password = "load-generator-password"

// run sends arrivals at the configured rate for Duration.
func (g *generator) run(ctx context.Context) *Summary {
	s := &Summary{Target: g.cfg.Target, Started: time.Now().UTC(), Rate: g.cfg.Rate, Users: g.cfg.Users, Mix: g.cfg.Mix.String()}
	start := time.Now()
	end := start.Add(g.cfg.Duration)
	stop := g.ticker(func() { g.drawProgress(start) })
	interval := time.Duration(float64(time.Second) / g.cfg.Rate)
	sem := make(chan struct{}, g.cfg.MaxInFlight)
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	// Every arrival due before the end is sent, however late the
	// scheduler gets to it (a starved generator shows as latency, since it
	// is measured from the due time); only ctx ends the run early.
loop:
	for i := int64(0); ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if !due.Before(end) {
			break
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break loop
		}
		op := g.cfg.Mix.Pick(g.rng)
		u := g.pickUser()
		select {
		case sem <- struct{}{}:
		default:
			g.rec.arrival(false)
			continue
		}
		g.rec.arrival(true)
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Requests run to their own timeout, not the run's end: a
			// request due before the end is measured.
			g.arrive(context.WithoutCancel(ctx), u, op, due)
		}()
	}
	s.Duration = time.Since(start).Seconds()
	// The run's end closes an outage no success ended: the end asked
	// for, or the moment ctx ended the run.
	runEnd := end
	if now := time.Now(); ctx.Err() != nil && now.Before(end) {
		runEnd = now
	}
	wg.Wait()
	stop()
	g.drawProgress(start)
	g.endLine()
	g.rec.summary(s, runEnd)
	if g.cfg.ReadYourWrites {
		g.mu.Lock()
		r := g.ryw
		for _, u := range g.users {
			if u.take() != nil {
				r.Unchecked++ // the run ended before the user came back
			}
		}
		g.mu.Unlock()
		s.ReadYourWrites = &r
	}
	return s
}

func (g *generator) pickUser() *user {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.users[g.rng.IntN(len(g.users))]
}

// ticker calls f every ProgressInterval until the returned stop is called.
func (g *generator) ticker(f func()) (stop func()) {
	if g.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(g.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (g *generator) drawProgress(start time.Time) {
	p := g.rec.takeWindow()
	g.printf("%s", p.line(time.Since(start), g.cfg.ProgressInterval, g.cfg.MaxInFlight))
}

// printf draws the progress line: in place on a terminal, one line per
// call elsewhere.
func (g *generator) printf(format string, args ...any) {
	if g.cfg.Progress == nil {
		return
	}
	if isTerminal(g.cfg.Progress) {
		fmt.Fprintf(g.cfg.Progress, "\r\033[K"+format, args...)
		return
	}
	fmt.Fprintf(g.cfg.Progress, format+"\n", args...)
}

func (g *generator) endLine() {
	if g.cfg.Progress != nil && isTerminal(g.cfg.Progress) {
		fmt.Fprintln(g.cfg.Progress)
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
