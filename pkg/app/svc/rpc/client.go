package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/internal/retrybudget"
	"github.com/scalestack/scalestack/internal/tracectx"
)

// Instance is one instance of a service as the client sees it.
type Instance struct {
	// Name is the instance's node name, as in membership and X-Served-By;
	// its breaker is kept under it.
	Name string
	// Addr is the host:port of its service API.
	Addr string
}

// BreakerConfig configures the circuit breaker each instance has.
type BreakerConfig struct {
	// Failures is how many consecutive failures (connection errors,
	// timeouts, 5xx of the instance's own) open the breaker. Zero: 5, as
	// Envoy's consecutive_5xx. Lower opens sooner on a dead instance and
	// also on a few unlucky calls to a live one.
	Failures int
	// Cooldown is how long an open breaker keeps calls away before one
	// trial call goes through. Zero: 5s. Each reopening doubles it, up to
	// MaxCooldown; closing starts over.
	Cooldown time.Duration
	// MaxCooldown bounds the doubling. Zero: 1m.
	MaxCooldown time.Duration
}

// Config configures a Client.
type Config struct {
	// Service is the name of the service called (users, content, ...),
	// the first segment of the paths. Required.
	Service string
	// Instances returns the service's instances that may take calls (not
	// draining): the node builds it from membership, a test from a list.
	// It is called on every call, so it must be cheap. Required.
	Instances func() []Instance
	// Timeout is a call's deadline when its context has none. Zero: 5s.
	// Every retry of the call fits in it.
	Timeout time.Duration
	// TryTimeout bounds each try of a call, within the call's deadline, so
	// that an instance that accepts calls but does not answer (a paused
	// process, a lost network) costs a safe call one TryTimeout before the
	// call goes elsewhere, not its whole deadline (Envoy's per_try_timeout).
	// A try of an unsafe call that runs out is outcome unknown, as any
	// timeout. Zero: none, the call's deadline alone. Set it above the
	// service's slowest normal answer, or slow answers become failures.
	TryTimeout time.Duration
	// Retries bounds how many times a failed call is sent again, each time
	// to another instance when there is one. Zero: 2; -1: never.
	Retries int
	// RetryBudget bounds all the client's retries together: they may be at
	// most this fraction of its calls over the last 10 seconds, plus
	// RetryMinPerSecond a second (Finagle's RetryBudget, as the lb's
	// --lb-retry-budget). When every instance fails the same way (its store
	// group down: each answers 503 and no breaker opens), the service then
	// gets about 1.2 times the gateway's calls rather than 1+Retries times.
	// Zero: 0.2; -1: no budget (Retries alone bounds).
	RetryBudget float64
	// RetryMinPerSecond is the budget's floor, so that a client with few
	// calls may still retry. Zero: 10; -1: none.
	RetryMinPerSecond int
	// Breaker configures the circuit breaker of each instance.
	Breaker BreakerConfig
	// MaxAnswerBytes bounds the body of an answer the client reads; a
	// longer one fails the call as a failure of the instance. Zero: 16 MiB
	// (an image of the media service's 5 MB limit, in base64, with room).
	MaxAnswerBytes int64
	// Token is sent as "Authorization: Bearer <token>" (the service's
	// ServerConfig.Token). Empty: nothing is sent.
	Token string
	// TLS, when set, makes the client speak https to the instances, with
	// its own transport. Nil: plain http.
	TLS *tls.Config
	// HTTPClient sends the calls. Nil: a client of its own with a
	// keep-alive pool (64 idle connections per instance) and a 2s connect
	// timeout; Close closes its idle connections.
	HTTPClient *http.Client
	// Codes are the service's own errors on the wire (see Code): the same
	// list as its ServerConfig.Codes. Nil: the table's only.
	Codes []Code
	// Logger logs breakers opening and closing. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock of the breakers and the retry budget. Nil:
	// time.Now; tests give a fake one to pass a cooldown without waiting
	// for it.
	Now func() time.Time
}

// Client calls the instances of one service: round robin over those whose
// breaker is not open, each call under a deadline, retried on another
// instance only when that cannot do its work twice. Safe for concurrent
// use.
type Client struct {
	cfg    Config
	codes  []code // the service's own
	http   *http.Client
	own    *http.Transport
	scheme string
	log    *slog.Logger
	now    func() time.Time

	rr     atomic.Uint64
	budget *retrybudget.Budget // nil: none

	mu       sync.Mutex
	breakers map[string]*instanceState // by Instance.Name

	calls, retries, denied, failed atomic.Uint64
}

type instanceState struct {
	addr string
	b    *breaker
}

// New returns a Client for cfg.Service.
func New(cfg Config) (*Client, error) {
	if !validName(cfg.Service) {
		return nil, fmt.Errorf("rpc: Config.Service %q: want a name of lowercase letters, digits, '_' or '-'", cfg.Service)
	}
	if cfg.Instances == nil {
		return nil, errors.New("rpc: Config.Instances is nil: give a function listing the service's instances")
	}
	for _, f := range []struct {
		name     string
		negative bool
	}{
		{"Timeout", cfg.Timeout < 0},
		{"TryTimeout", cfg.TryTimeout < 0},
		{"Retries", cfg.Retries < -1},
		{"RetryBudget", cfg.RetryBudget < 0 && cfg.RetryBudget != -1},
		{"RetryMinPerSecond", cfg.RetryMinPerSecond < -1},
		{"Breaker.Failures", cfg.Breaker.Failures < 0},
		{"Breaker.Cooldown", cfg.Breaker.Cooldown < 0},
		{"Breaker.MaxCooldown", cfg.Breaker.MaxCooldown < 0},
	} {
		if f.negative {
			return nil, fmt.Errorf("rpc: Config.%s of the %s client is negative (zero takes the default)", f.name, cfg.Service)
		}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	switch cfg.Retries {
	case 0:
		cfg.Retries = 2
	case -1:
		cfg.Retries = 0
	}
	own, err := ownCodes("Config.Codes", cfg.Codes)
	if err != nil {
		return nil, err
	}
	switch cfg.RetryBudget {
	case 0:
		cfg.RetryBudget = 0.2
	case -1:
		cfg.RetryBudget = 0
	}
	switch cfg.RetryMinPerSecond {
	case 0:
		cfg.RetryMinPerSecond = 10
	case -1:
		cfg.RetryMinPerSecond = 0
	}
	if cfg.MaxAnswerBytes <= 0 {
		cfg.MaxAnswerBytes = 16 << 20
	}
	if cfg.Breaker.Failures == 0 {
		cfg.Breaker.Failures = 5
	}
	if cfg.Breaker.Cooldown == 0 {
		cfg.Breaker.Cooldown = 5 * time.Second
	}
	if cfg.Breaker.MaxCooldown == 0 {
		cfg.Breaker.MaxCooldown = time.Minute
	}
	cfg.Breaker.MaxCooldown = max(cfg.Breaker.MaxCooldown, cfg.Breaker.Cooldown)
	c := &Client{cfg: cfg, codes: own, http: cfg.HTTPClient, scheme: "http://", log: cfg.Logger, now: cfg.Now,
		breakers: map[string]*instanceState{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.RetryBudget > 0 || cfg.RetryMinPerSecond > 0 {
		c.budget = retrybudget.New(cfg.RetryBudget, cfg.RetryMinPerSecond)
	}
	if cfg.TLS != nil {
		c.scheme = "https://"
	}
	if c.http == nil {
		c.own = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     cfg.TLS.Clone(),
			TLSHandshakeTimeout: 2 * time.Second,
		}
		c.http = &http.Client{Transport: c.own}
	}
	return c, nil
}

// Close releases the idle connections of the client's own transport.
func (c *Client) Close() error {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// Call makes the call m(req) on one of c's instances and returns its
// result, or an error that matches what the service returned (svc's
// sentinels, *svc.FieldError), ErrUnavailable when no instance could take
// it, ErrOutcomeUnknown when a call that may not be repeated got no answer,
// or the context's error.
//
// The call goes to the next instance in turn whose breaker lets it. It is
// sent again, to another instance when there is one, when:
//   - nothing of it reached an instance (the connection was refused, or
//     lost before the request was written): any call;
//   - it is safe to repeat (m.Idempotent, or ctx carries an idempotency
//     key) and the instance answered 503 or 504 or gave no answer (a
//     connection lost, a reset, a TryTimeout run out),
//
// within Config.Retries and the retry budget, while the call's deadline
// leaves time.
//
// A call that is not safe to repeat and may have reached an instance is
// never sent again: it returns ErrOutcomeUnknown.
func Call[Req, Resp any](ctx context.Context, c *Client, m Method[Req, Resp], req Req) (Resp, error) {
	var out Resp
	body, err := json.Marshal(req)
	if err != nil {
		return out, fmt.Errorf("%s.%s: encode the arguments: %w", c.cfg.Service, m.Name, err)
	}
	if m.Key != nil && sendKey(ctx) == "" {
		ctx = WithIdempotencyKey(ctx, m.Key(req))
	}
	answer, err := c.call(ctx, m.Name, m.Idempotent, body)
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(answer.body, &out); err != nil {
		return out, fmt.Errorf("%s.%s on %s: decode the result: %w", c.cfg.Service, m.Name, answer.instance, err)
	}
	return out, nil
}

// answer is a successful call's result.
type answer struct {
	instance string
	body     []byte
}

// attempt is how one try at an instance ended.
type attempt struct {
	instance Instance
	status   int    // 0: no answer
	body     []byte // the answer's body
	err      error  // the transport's error, when no answer
	wrote    bool   // the whole request reached the connection
}

func (c *Client) call(ctx context.Context, method string, idempotent bool, body []byte) (answer, error) {
	c.calls.Add(1)
	if c.budget != nil {
		c.budget.Request(c.now())
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	safe := idempotent || sendKey(ctx) != ""
	// One turn per call: a retry takes the next instance after the one
	// that failed, not the next turn, so that a dead instance does not make
	// every call start with it.
	start := c.rr.Add(1) - 1
	var tried map[string]bool
	var last error
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			// Out of time before this try: no instance is to blame.
			c.failed.Add(1)
			if last != nil {
				return answer{}, last
			}
			return answer{}, fmt.Errorf("%s.%s: %w", c.cfg.Service, method, err)
		}
		inst, err := c.pick(start, tried)
		if err != nil {
			c.failed.Add(1)
			if last != nil {
				// The instances left are held off: the last failure says more.
				return answer{}, last
			}
			return answer{}, err
		}
		if try > 0 {
			c.retries.Add(1)
		}
		a := c.try(ctx, inst, method, body, !safe)
		retry, err := c.judge(ctx, a, method, safe)
		if err == nil {
			return answer{instance: inst.Name, body: a.body}, nil
		}
		last = err
		if retry && try < c.cfg.Retries && ctx.Err() == nil && c.budget != nil && !c.budget.Allow(c.now()) {
			c.denied.Add(1)
			retry = false
		}
		if !retry || try >= c.cfg.Retries || ctx.Err() != nil {
			if !refused(err) {
				c.failed.Add(1)
			}
			return answer{}, err
		}
		if tried == nil {
			tried = map[string]bool{}
		}
		tried[inst.Name] = true
	}
}

// refused reports whether err is a service's answer that refused the call
// (a 4xx: not found, invalid, ...), which the client's counts of failed
// calls leave out: the service worked.
func refused(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500
}

// judge records a's outcome in its instance's breaker and says whether the
// call may be sent again and with which error it ends otherwise (nil: it
// succeeded).
func (c *Client) judge(ctx context.Context, a attempt, method string, safe bool) (retry bool, err error) {
	svcName := c.cfg.Service
	if a.status == 0 {
		// No answer.
		switch {
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			// The caller gave up: that tells nothing of the instance.
			c.record(a.instance, neutral, "")
			return false, fmt.Errorf("%s.%s on %s: %w", svcName, method, a.instance.Name, ctx.Err())
		case !a.wrote:
			c.record(a.instance, failure, a.err.Error())
			return true, fmt.Errorf("%s.%s: %s did not take the call: %w: %w", svcName, method, a.instance.Name, ErrUnavailable, a.err)
		case safe:
			c.record(a.instance, failure, a.err.Error())
			return true, fmt.Errorf("%s.%s on %s: no answer: %w", svcName, method, a.instance.Name, a.err)
		default:
			c.record(a.instance, failure, a.err.Error())
			return false, fmt.Errorf("%s.%s on %s: %w: no answer (%w); not retried, since the call is neither idempotent nor keyed",
				svcName, method, a.instance.Name, ErrOutcomeUnknown, a.err)
		}
	}
	if a.status/100 == 2 {
		c.record(a.instance, success, "")
		return false, nil
	}
	we, cause := decodeError(a.status, a.body, c.codes)
	e := &Error{Service: svcName, Method: method, Instance: a.instance.Name, Status: a.status, Wire: we, err: cause}
	switch {
	case a.status == http.StatusServiceUnavailable && we.Code != "":
		// The instance answered, in the wire's body, that a dependency it
		// shares with every instance (its store group; for payments, the
		// card processor) is down or slow: no reason to keep calls from it.
		// "unavailable" means nothing was done; a service's own 503 code
		// (payments' outcome unknown) is safe to repeat only when the call
		// is, which the retry rule below already requires.
		c.record(a.instance, neutral, "")
		return safe, e
	case we.Code == "outcome_unknown":
		// Its store's trouble too, but something may have been done.
		c.record(a.instance, neutral, "")
		return false, e
	case a.status == http.StatusServiceUnavailable:
		// A 503 of its own (a proxy's, a server shutting down).
		c.record(a.instance, failure, e.Error())
		return safe, e
	case a.status == http.StatusGatewayTimeout && !safe:
		c.record(a.instance, failure, e.Error())
		return false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, e)
	case a.status == http.StatusGatewayTimeout:
		// The try's time ran out in the service (TryTimeout, or the
		// call's own deadline, which the loop checks before a retry).
		c.record(a.instance, failure, e.Error())
		return true, e
	case a.status >= 500:
		c.record(a.instance, failure, e.Error())
		return false, e
	}
	// A 4xx: the instance works; the call was refused.
	c.record(a.instance, success, "")
	return false, e
}

// try makes one try at inst, under TryTimeout when there is one.
func (c *Client) try(ctx context.Context, inst Instance, method string, body []byte, traced bool) attempt {
	if c.cfg.TryTimeout <= 0 {
		return c.send(ctx, inst, method, body, traced)
	}
	tctx, cancel := context.WithTimeout(ctx, c.cfg.TryTimeout)
	defer cancel()
	return c.send(tctx, inst, method, body, traced)
}

// send makes one try at inst. With traced, it watches whether the whole
// request was written, which decides whether a call that is not safe to
// repeat may go elsewhere after a failure; a safe call goes elsewhere
// either way, and is spared the hook (a dial error alone says "not sent").
func (c *Client) send(ctx context.Context, inst Instance, method string, body []byte, traced bool) attempt {
	a := attempt{instance: inst}
	var wrote atomic.Bool
	rctx := ctx
	if traced {
		rctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
			if i.Err == nil {
				wrote.Store(true)
			}
		}})
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.scheme+inst.Addr+Path(c.cfg.Service, method), bytes.NewReader(body))
	if err != nil {
		a.err = err
		return a
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			a.err = context.DeadlineExceeded
			return a
		}
		h.Set(HeaderTimeout, timeoutValue(left))
	}
	if tp := tracectx.Traceparent(ctx); tp != "" {
		h.Set(HeaderTraceparent, tp)
	}
	if k := sendKey(ctx); k != "" {
		h.Set(HeaderIdempotencyKey, k)
	}
	if c.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	storeHeaders(ctx, h)
	resp, err := c.http.Do(req)
	if err != nil {
		a.err, a.wrote = err, wrote.Load()
		if !traced {
			var op *net.OpError
			a.wrote = !(errors.As(err, &op) && op.Op == "dial")
		}
		return a
	}
	defer resp.Body.Close()
	a.body, err = io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxAnswerBytes+1))
	if err == nil && int64(len(a.body)) > c.cfg.MaxAnswerBytes {
		err = fmt.Errorf("over Config.MaxAnswerBytes (%d bytes)", c.cfg.MaxAnswerBytes)
	}
	if err != nil {
		// The head came, the body did not: as good as no answer.
		a.err, a.wrote, a.body = fmt.Errorf("read the answer: %w", err), true, nil
		return a
	}
	a.status = resp.StatusCode
	recordStore(ctx, resp.Header)
	if t := trailFrom(ctx); t != nil {
		servedBy := resp.Header.Get(HeaderServedBy)
		if servedBy == "" {
			servedBy = inst.Name
		}
		t.add(servedBy)
	}
	return a
}

// pick returns the first instance from start on whose breaker lets a call
// through, preferring one this call has not tried.
func (c *Client) pick(start uint64, tried map[string]bool) (Instance, error) {
	list := c.cfg.Instances()
	if len(list) == 0 {
		return Instance{}, fmt.Errorf("service %s: no instance known (none in membership, or all draining): %w", c.cfg.Service, ErrUnavailable)
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(list)
	fallback := -1
	var soonest time.Time
	for i := range list {
		at := int((start + uint64(i)) % uint64(len(list)))
		inst := list[at]
		st := c.state(inst)
		if !st.b.available(now) {
			if st.b.state == Open && (soonest.IsZero() || st.b.until.Before(soonest)) {
				soonest = st.b.until
			}
			continue
		}
		if tried[inst.Name] {
			if fallback < 0 {
				fallback = at
			}
			continue
		}
		st.b.allow(now)
		return inst, nil
	}
	if fallback >= 0 {
		inst := list[fallback]
		c.state(inst).b.allow(now)
		return inst, nil
	}
	msg := fmt.Sprintf("service %s: every instance (%d) is failing, calls held off", c.cfg.Service, len(list))
	if !soonest.IsZero() {
		msg += fmt.Sprintf(" (next trial in %v)", soonest.Sub(now).Round(time.Millisecond))
	}
	return Instance{}, fmt.Errorf("%s: %w", msg, ErrUnavailable)
}

// state returns inst's state, made on first sight, and made afresh when
// the name comes with a new address: another process, whose predecessor's
// failures say nothing of it. c.mu is held.
func (c *Client) state(inst Instance) *instanceState {
	st := c.breakers[inst.Name]
	if st == nil || st.addr != inst.Addr {
		st = &instanceState{addr: inst.Addr, b: newBreaker(c.cfg.Breaker)}
		c.breakers[inst.Name] = st
	}
	return st
}

// prune forgets the instances that left, so that a name reused later
// starts closed and /status lists only the present. c.mu is held.
func (c *Client) prune(list []Instance) {
	if len(c.breakers) <= len(list) {
		return
	}
	present := make(map[string]bool, len(list))
	for _, inst := range list {
		present[inst.Name] = true
	}
	for name := range c.breakers {
		if !present[name] {
			delete(c.breakers, name)
		}
	}
}

func (c *Client) record(inst Instance, o outcome, errText string) {
	now := c.now()
	c.mu.Lock()
	st := c.state(inst)
	from, to := st.b.record(now, o, errText)
	cooldown := st.b.cooldown
	c.mu.Unlock()
	switch {
	case from == to:
	case to == Open:
		c.log.Warn("rpc: instance failing, calls held off", "service", c.cfg.Service, "instance", inst.Name,
			"addr", inst.Addr, "for", cooldown, "err", errText)
	case to == Closed:
		c.log.Info("rpc: instance answers again", "service", c.cfg.Service, "instance", inst.Name, "addr", inst.Addr)
	}
}

// Status is the client's state for /status.
type Status struct {
	Service string `json:"service"`
	// Calls counts Call; Retries the tries after a call's first;
	// RetriesDenied the retries the budget refused; Failed the calls that
	// ended in an error other than a service's refusal (a 4xx: not found,
	// invalid, ...).
	Calls         uint64           `json:"calls"`
	Retries       uint64           `json:"retries"`
	RetriesDenied uint64           `json:"retries_denied"`
	Failed        uint64           `json:"failed"`
	Instances     []InstanceStatus `json:"instances"`
}

// InstanceStatus is one instance's breaker and counts.
type InstanceStatus struct {
	Name  string       `json:"name"`
	Addr  string       `json:"addr"`
	State BreakerState `json:"state"`
	// ConsecutiveFailures is the count towards opening.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// RetryIn is how long an open breaker still holds calls off.
	RetryIn   string    `json:"retry_in,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	LastErrAt time.Time `json:"last_error_at,omitzero"`
	// Calls counts the tries sent to the instance, Failures those that
	// counted as its failures.
	Calls    uint64 `json:"calls"`
	Failures uint64 `json:"failures"`
}

// Status returns the calls made and each present instance's breaker, in
// the order Instances lists them.
func (c *Client) Status() Status {
	list := c.cfg.Instances()
	now := c.now()
	s := Status{Service: c.cfg.Service, Calls: c.calls.Load(), Retries: c.retries.Load(), RetriesDenied: c.denied.Load(), Failed: c.failed.Load(),
		Instances: make([]InstanceStatus, 0, len(list))}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune(list)
	for _, inst := range list {
		b := c.state(inst).b
		is := InstanceStatus{Name: inst.Name, Addr: inst.Addr, State: b.state, ConsecutiveFailures: b.failures,
			LastError: b.lastErr, LastErrAt: b.lastErrAt, Calls: b.calls, Failures: b.failed}
		if b.state == Open && now.Before(b.until) {
			is.RetryIn = b.until.Sub(now).Round(time.Millisecond).String()
		}
		s.Instances = append(s.Instances, is)
	}
	return s
}
