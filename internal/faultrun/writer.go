package faultrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/poll"
)

// Operations of the writer, as recorded in an Outcome.
const (
	OpPost   = "post"   // POST /api/v1/posts as a logged-in user
	OpSignup = "signup" // POST /api/v1/signup of a new user (a welcome e-mail job)
	OpRead   = "read"   // GET /api/v1/posts/{id} by its author right after the 201
	OpLogin  = "login"  // POST /api/v1/login after a 401, as a person would
)

// Outcome is one request of the writer, with when it was sent and
// answered.
type Outcome struct {
	Op string
	// Key is unique per write: the post's title, the new user's handle.
	// For a read, the id of the post read.
	Key        string
	User       string
	Start, End time.Time
	// Status is the HTTP status, 0 when there was no answer (Err says why).
	Status int
	Err    string
	// ID is the post id a 201 named.
	ID string
	// Store and App are the X-Store and X-Served-By headers: the store
	// node that answered the app last, and the app node.
	Store, App string
}

// OK reports whether the request did what it asked.
func (o Outcome) OK() bool {
	switch o.Op {
	case OpPost, OpSignup:
		return o.Status == http.StatusCreated
	}
	return o.Status == http.StatusOK
}

// Write reports whether the request was a write the store should keep.
func (o Outcome) Write() bool { return o.Op == OpPost || o.Op == OpSignup }

// Failure names what went wrong, for the tables: the status code, or the
// kind of transport error.
func (o Outcome) Failure() string {
	if o.Status != 0 {
		return strconv.Itoa(o.Status)
	}
	return o.Err
}

// errorKind names a transport error briefly: "timeout", "refused",
// "reset", "eof" or "conn".
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "conn"
}

// writerConfig configures the writer.
type writerConfig struct {
	// Target is the lb's base URL.
	Target string
	// Rate is posts per second, sent at fixed times whatever the stack
	// does (open loop), each by the next user of the pool in turn.
	Rate float64
	// SignupRate is sign-ups per second, open loop too; 0 means none.
	SignupRate float64
	// Users is the pool signed up before the run; sign-ups join it.
	Users int
	// Timeout bounds one request: past it the write's outcome is unknown.
	Timeout time.Duration
	// Prefix starts every handle and title of the run (a-z0-9, short).
	Prefix string
}

// writer is logged-in users creating posts and new users signing up
// through the lb, each post read back by its author at once.
type writer struct {
	cfg       writerConfig
	transport *http.Transport
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the schedulers
	reqs      sync.WaitGroup // requests in flight

	mu       sync.Mutex
	users    []*user
	next     int
	posts    int
	signups  int
	outcomes []Outcome
	ryw      RYW
}

// RYW counts the read-your-writes checks: each post acknowledged with 201
// is read back at once by its author through the lb, whichever app and
// store replica serve it.
type RYW struct {
	Checks     int // read back with an answer that decides (200 or 404)
	Violations int // 404: the author did not see their acknowledged post
	Unchecked  int // no deciding answer in 3 tries (errors during a fault)
	Examples   []string
}

type user struct {
	handle string
	client *http.Client
	mu     sync.Mutex // held while logging in again, so one 401 storm is one login
	gen    int        // counts logins, so an old 401 does not cause a second one
}

const password = "faultrun-password"

func newWriter(cfg writerConfig) *writer {
	return &writer{cfg: cfg, transport: &http.Transport{
		Proxy:               nil, // only the netns hosts, never a proxy from the environment
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}}
}

func (w *writer) newUser(handle string) *user {
	jar, _ := cookiejar.New(nil)
	return &user{handle: handle, client: &http.Client{Transport: w.transport, Jar: jar, Timeout: w.cfg.Timeout}}
}

// signUpPool signs up the pool before the run. The stack is healthy then,
// so a sign-up that fails is tried again, and the pool's outcomes are not
// recorded: they are not part of the run.
func (w *writer) signUpPool(ctx context.Context) error {
	users := make([]*user, w.cfg.Users)
	errs := make([]error, w.cfg.Users)
	sem := make(chan struct{}, 4) // bcrypt is CPU-bound on 2 shared cores
	var wg sync.WaitGroup
	for i := range users {
		users[i] = w.newUser(fmt.Sprintf("%su%d", w.cfg.Prefix, i))
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = poll.Until(ctx, 30*time.Second, pollEvery, func() error {
				o := w.signup(ctx, users[i])
				if o.Status == http.StatusConflict { // an earlier try committed
					o = w.do(ctx, users[i], OpLogin, users[i].handle, http.MethodPost, "/api/v1/login",
						map[string]string{"handle": users[i].handle, "password": password}, nil)
				}
				if o.Status/100 != 2 {
					return fmt.Errorf("sign-up of %s: %s", users[i].handle, o.Failure())
				}
				return nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	w.mu.Lock()
	w.users = users
	w.mu.Unlock()
	return nil
}

// start sends posts and sign-ups at their rates until stop.
func (w *writer) start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Go(func() { w.schedule(ctx, w.cfg.Rate, w.post) })
	if w.cfg.SignupRate > 0 {
		w.wg.Go(func() { w.schedule(ctx, w.cfg.SignupRate, w.newSignup) })
	}
}

// stop ends the schedules and waits for every request in flight to be
// answered or time out: each request's outcome is part of the run.
func (w *writer) stop() {
	w.cancel()
	w.wg.Wait()
	w.reqs.Wait()
}

// schedule calls op at start + i/rate, each in its own goroutine, so a
// stalled stack shows as failures and latency, not as fewer requests.
func (w *writer) schedule(ctx context.Context, rate float64, op func(context.Context)) {
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		timer.Reset(time.Until(due))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		w.reqs.Go(func() { op(context.Background()) })
	}
}

// post creates a post as the next user of the pool and, once it is
// acknowledged, reads it back as that user.
func (w *writer) post(ctx context.Context) {
	w.mu.Lock()
	u := w.users[w.next%len(w.users)]
	w.next++
	w.posts++
	title := fmt.Sprintf("%s post %d", w.cfg.Prefix, w.posts)
	w.mu.Unlock()
	in := map[string]any{"title": title, "body": "A post of the *fault run*: " + title + ".", "tags": []string{"faultrun"}, "published": true}
	var out struct {
		Post struct {
			ID string `json:"id"`
		} `json:"post"`
	}
	gen := u.generation()
	o := w.do(ctx, u, OpPost, title, http.MethodPost, "/api/v1/posts", in, &out)
	o.ID = out.Post.ID
	if o.OK() && o.ID == "" {
		o.Status, o.Err = 0, "201 without a post id"
	}
	w.record(o)
	if o.Status == http.StatusUnauthorized {
		w.relogin(ctx, u, gen)
		return
	}
	if o.OK() {
		w.readBack(ctx, u, o)
	}
}

// readBack is the read-your-writes check: the author reads the post it
// was just told exists. 404 is a violation; an error is tried again, as
// the user would reload, up to three times.
func (w *writer) readBack(ctx context.Context, u *user, post Outcome) {
	for try := range 3 {
		gen := u.generation()
		o := w.do(ctx, u, OpRead, post.ID, http.MethodGet, "/api/v1/posts/"+url.PathEscape(post.ID), nil, nil)
		w.record(o)
		switch {
		case o.Status == http.StatusOK:
			w.mu.Lock()
			w.ryw.Checks++
			w.mu.Unlock()
			return
		case o.Status == http.StatusNotFound:
			w.mu.Lock()
			w.ryw.Checks++
			w.ryw.Violations++
			if len(w.ryw.Examples) < 5 {
				w.ryw.Examples = append(w.ryw.Examples, fmt.Sprintf("%s's post %s (%q) acknowledged at %s by %s/%s, read back 404 at %s by %s/%s",
					u.handle, post.ID, post.Key, post.End.Format("15:04:05.000"), post.App, post.Store, o.End.Format("15:04:05.000"), o.App, o.Store))
			}
			w.mu.Unlock()
			return
		case o.Status == http.StatusUnauthorized:
			w.relogin(ctx, u, gen)
		}
		time.Sleep(time.Duration(try+1) * 300 * time.Millisecond)
	}
	w.mu.Lock()
	w.ryw.Unchecked++
	w.mu.Unlock()
}

// newSignup signs up a new user, who joins the pool once acknowledged.
func (w *writer) newSignup(ctx context.Context) {
	w.mu.Lock()
	w.signups++
	u := w.newUser(fmt.Sprintf("%ss%d", w.cfg.Prefix, w.signups))
	w.mu.Unlock()
	o := w.signup(ctx, u)
	w.record(o)
	if o.OK() {
		w.mu.Lock()
		w.users = append(w.users, u)
		w.mu.Unlock()
	}
}

func (w *writer) signup(ctx context.Context, u *user) Outcome {
	return w.do(ctx, u, OpSignup, u.handle, http.MethodPost, "/api/v1/signup",
		map[string]string{"handle": u.handle, "email": u.handle + "@faults.test", "password": password}, nil)
}

func (u *user) generation() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.gen
}

// relogin logs u in again after a 401 to a request sent at generation gen
// (a 401 is what the run must not see; the login lets the user go on, as
// a person would, and the 401 stays counted).
func (w *writer) relogin(ctx context.Context, u *user, gen int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.gen != gen {
		return // someone logged in since that request was sent
	}
	o := w.do(ctx, u, OpLogin, u.handle, http.MethodPost, "/api/v1/login", map[string]string{"handle": u.handle, "password": password}, nil)
	w.record(o)
	if o.OK() {
		u.gen++
	}
}

// do sends one request as u and reads the whole answer; a 2xx JSON answer
// is decoded into out when out is not nil.
func (w *writer) do(ctx context.Context, u *user, op, key, method, path string, in, out any) Outcome {
	o := Outcome{Op: op, Key: key, User: u.handle}
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, w.cfg.Target+path, body)
	if err != nil {
		o.Err = err.Error()
		return o
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "scalestack-faultrun")
	o.Start = time.Now()
	resp, err := u.client.Do(req)
	if err != nil {
		o.End, o.Err = time.Now(), errorKind(err)
		return o
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	o.End = time.Now()
	o.Status = resp.StatusCode
	o.Store, o.App = resp.Header.Get("X-Store"), resp.Header.Get("X-Served-By")
	if err != nil {
		// The status came but not the whole answer: for a write that is
		// still an answer (the status line is the acknowledgement).
		o.Err = errorKind(err)
	}
	if out != nil && resp.StatusCode/100 == 2 && err == nil {
		if err := json.Unmarshal(b, out); err != nil {
			o.Err = "bad answer: " + err.Error()
		}
	}
	return o
}

func (w *writer) record(o Outcome) {
	w.mu.Lock()
	w.outcomes = append(w.outcomes, o)
	w.mu.Unlock()
}

// all returns a copy of the outcomes so far.
func (w *writer) all() []Outcome {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Outcome(nil), w.outcomes...)
}

// since counts the write outcomes answered at or after t: acknowledged
// posts, failed posts, acknowledged and failed sign-ups. For the progress
// line.
func (w *writer) since(t time.Time) (postOK, postFail, signOK, signFail int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.outcomes) - 1; i >= 0; i-- {
		o := w.outcomes[i]
		if o.End.Before(t.Add(-w.cfg.Timeout)) {
			// Outcomes are appended as they end, give or take the
			// goroutines' scheduling: nothing further back ends after t.
			break
		}
		if o.End.Before(t) {
			continue
		}
		switch {
		case o.Op == OpPost && o.OK():
			postOK++
		case o.Op == OpPost:
			postFail++
		case o.Op == OpSignup && o.OK():
			signOK++
		case o.Op == OpSignup:
			signFail++
		}
	}
	return
}

func (w *writer) rywCounts() RYW {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.ryw
	r.Examples = append([]string(nil), r.Examples...)
	return r
}
