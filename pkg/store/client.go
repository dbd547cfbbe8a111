package store

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scalestack/scalestack/internal/tracectx"
)

// NodeInfo is one store node as the client sees it.
type NodeInfo struct {
	// Name is the node's name, as in membership and X-Store-Node.
	Name string
	// Addr is the host:port of its store API.
	Addr string
	// Primary marks the node that takes writes.
	Primary bool
	// Group is the node's store group (--group); DefaultGroup ("") for
	// stages 1 to 9.
	Group string
}

// Resolver tells the client which store nodes exist. The node wires one
// backed by membership; StaticResolver serves tests and gossip-free setups.
// StoreNodes is called on every request, so it must be cheap.
type Resolver interface {
	StoreNodes() []NodeInfo
}

// StaticResolver is a fixed list of store nodes.
type StaticResolver []NodeInfo

// StoreNodes returns the list.
func (r StaticResolver) StoreNodes() []NodeInfo { return r }

// Consistency says how fresh a read must be.
type Consistency int

const (
	// Strong reads from the primary.
	Strong Consistency = iota
	// Session reads from any node that has applied at least the caller's
	// minimum LSN, so a user reads their own writes.
	Session
	// Eventual reads from any node, however far behind.
	Eventual
)

// String returns the flag spelling: strong, session or eventual.
func (c Consistency) String() string {
	switch c {
	case Strong:
		return "strong"
	case Session:
		return "session"
	case Eventual:
		return "eventual"
	}
	return "Consistency(" + strconv.Itoa(int(c)) + ")"
}

type consistencyKey struct{}

type consistency struct {
	level   Consistency
	atLeast LSNs
}

// WithConsistency returns a context whose reads ask for consistency c; with
// Session, minLSN is the LSN of the default group the answer must have
// reached (WithConsistencyLSNs for other groups).
func WithConsistency(ctx context.Context, c Consistency, minLSN uint64) context.Context {
	return WithConsistencyLSNs(ctx, c, LSNsOf(DefaultGroup, minLSN))
}

// WithConsistencyLSNs is WithConsistency with an LSN per store group: a
// client of group G asks for atLeast.Get(G), and ignores the other groups'.
func WithConsistencyLSNs(ctx context.Context, c Consistency, atLeast LSNs) context.Context {
	return context.WithValue(ctx, consistencyKey{}, consistency{level: c, atLeast: atLeast})
}

// ConsistencyFrom returns the consistency attached to ctx and its LSN of
// the default group (Strong, 0 if none).
func ConsistencyFrom(ctx context.Context) (Consistency, uint64) {
	c, _ := ctx.Value(consistencyKey{}).(consistency)
	return c.level, c.atLeast.Get(DefaultGroup)
}

// ConsistencyLSNs returns the consistency attached to ctx and its LSN of
// every group (Strong, none if none).
func ConsistencyLSNs(ctx context.Context) (Consistency, LSNs) {
	c, _ := ctx.Value(consistencyKey{}).(consistency)
	return c.level, c.atLeast
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Resolver lists the store nodes. Required. It may list the nodes of
	// every group: the client keeps those of Group.
	Resolver Resolver

	// Group is the store group this client reads and writes (--group of its
	// store nodes). Default DefaultGroup, the one group of stages 1 to 9.
	// The client never sends a request to a node of another group, and
	// names its group on every request (HeaderGroup) so that a node of
	// another group refuses it.
	Group string

	// HTTPClient sends the requests. Nil means a client of its own with a
	// keep-alive pool (64 idle connections per node), a 2s connect timeout
	// and no proxy; Client.Close closes its idle connections.
	HTTPClient *http.Client

	// Timeout bounds one call when ctx has no earlier deadline. Default 5s.
	// A write that times out has an unknown outcome: it may have committed.
	Timeout time.Duration

	// Token is presented on every request as "Authorization: Bearer
	// <token>": the store nodes' Config.Token, which the node derives from
	// --cluster-key. Empty presents nothing, for store nodes without one. A
	// node that refuses it answers 401, ErrUnauthorized.
	Token string

	// TLS, when not nil, makes the client speak https to the store nodes,
	// verifying each against TLS.RootCAs and the address it dials. It is
	// used by the client's own transport only: with HTTPClient set, that
	// client's transport decides. Default nil: plain http.
	TLS *tls.Config
}

// Client is the Store over the network. Writes go to the primary; reads go
// to the primary too until replicas exist (see WithConsistency). It never
// retries a write, because a write whose answer was lost may have committed.
// A Client is safe for concurrent use.
type Client struct {
	resolver Resolver // the nodes of group only
	group    string
	http     *http.Client
	own      *http.Transport // the transport we made, closed by Close
	timeout  time.Duration
	token    string
	scheme   string // "http://" or "https://"

	rr    atomic.Uint64 // round robin over replicas
	mu    sync.Mutex
	epoch uint64   // highest epoch seen in answers: sent with writes (fencing)
	known NodeInfo // the primary the store nodes last named (X-Store-Primary)
	// silent holds the nodes that last failed to answer (a paused or cut
	// off node's kernel may still accept connections), until when they are
	// passed over while another node can be asked who the primary is.
	silent map[string]time.Time
}

// silentFor is how long a node that did not answer is passed over.
const silentFor = time.Second

// NewClient returns a client; it panics if cfg.Resolver is nil or
// cfg.Group is not a group's name (ParseGroup), which are wiring bugs, not
// runtime conditions: a group given by a flag is checked where the flag is.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Resolver == nil {
		panic("store: NewClient: ClientConfig.Resolver is nil")
	}
	group, err := ParseGroup(cfg.Group)
	if err != nil {
		panic("store: NewClient: ClientConfig.Group: " + err.Error())
	}
	cfg.Group = group
	c := &Client{resolver: InGroup(cfg.Resolver, cfg.Group), group: cfg.Group, http: cfg.HTTPClient, timeout: cfg.Timeout, token: cfg.Token, scheme: "http://"}
	if cfg.TLS != nil {
		c.scheme = "https://"
	}
	if c.timeout <= 0 {
		c.timeout = 5 * time.Second
	}
	if c.http == nil {
		c.own = &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 0,               // the per-call deadline bounds it
			TLSClientConfig:       cfg.TLS.Clone(), // nil stays nil
			TLSHandshakeTimeout:   2 * time.Second,
		}
		c.http = &http.Client{Transport: c.own}
	}
	return c
}

// Group returns the store group the client reads and writes.
func (c *Client) Group() string { return c.group }

// Close releases the idle connections of the client's own transport.
func (c *Client) Close() error {
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// Get returns the value of bucket/key, or an error wrapping ErrNotFound.
func (c *Client) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	body, err := c.read(ctx, PathKV+url.PathEscape(bucket)+"/"+url.PathEscape(key))
	if err != nil {
		return nil, fmt.Errorf("store get %s/%s: %w", bucket, key, err)
	}
	return body, nil
}

// Scan returns the pairs of bucket selected by opts.
func (c *Client) Scan(ctx context.Context, bucket string, opts ScanOptions) ([]Pair, error) {
	q := url.Values{}
	if opts.Prefix != "" {
		q.Set("prefix", opts.Prefix)
	}
	if opts.Start != "" {
		q.Set("start", opts.Start)
	}
	if opts.End != "" {
		q.Set("end", opts.End)
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Reverse {
		q.Set("reverse", "true")
	}
	u := PathScan + url.PathEscape(bucket)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	body, err := c.read(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("store scan %s: %w", bucket, err)
	}
	var out WireScan
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("store scan %s: decode answer: %w", bucket, err)
	}
	pairs := make([]Pair, len(out.Pairs))
	for i, p := range out.Pairs {
		v, _, err := DecodeValue(p.Value, p.ValueB64)
		if err != nil {
			return nil, fmt.Errorf("store scan %s: decode answer: %w", bucket, err)
		}
		if v == nil {
			v = []byte{}
		}
		pairs[i] = Pair{Key: p.Key, Value: v}
	}
	return pairs, nil
}

// Txn sends ops to the primary and returns the LSN of the commit. A node
// that answers "not the primary" (421) applied nothing, so the write is sent
// again to the primary that node names, or, after a failover, to whichever
// node the store nodes now name, for up to the call's deadline.
func (c *Client) Txn(ctx context.Context, ops ...Op) (uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body []byte
	var err error
	var refused map[string]bool // nodes that refused a connection during this call
	for attempt := 0; ; attempt++ {
		var node NodeInfo
		node, err = c.primaryAvoiding(refused)
		if err == nil {
			body, err = c.do(ctx, node, http.MethodPost, c.scheme+node.Addr+PathTxn, toWireOps(ops))
			if err == nil {
				break
			}
			switch {
			case errors.Is(err, ErrNotPrimary):
				// Refused before anything was applied: resend below.
			case notSent(err) && ctx.Err() == nil:
				// The connection was refused, so nothing was sent: a dead
				// primary. Ask another node who the primary is now.
				if refused == nil {
					refused = map[string]bool{}
				}
				refused[node.Name] = true
			default:
				return 0, fmt.Errorf("store txn: %w", err)
			}
		}
		// Refused before anything was applied (421 or no connection), or
		// no primary known: wait a little for the failover to finish and
		// try again.
		if attempt > 0 {
			t := time.NewTimer(min(time.Duration(attempt)*20*time.Millisecond, 200*time.Millisecond))
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, fmt.Errorf("store txn: %w (last: %w)", ErrUnavailable, err)
			case <-t.C:
			}
		}
	}
	var out WireLSN
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("store txn: decode answer: %w", err)
	}
	return out.LSN, nil
}

// primary returns the node that takes writes: the one the store nodes last
// named in X-Store-Primary while it is still listed, else the one the
// Resolver marks primary, else any listed node (which names the primary in
// its answer).
func (c *Client) primary() (NodeInfo, error) { return c.primaryAvoiding(nil) }

// primaryAvoiding is primary, passing over the nodes in avoid (they refused
// a connection): with every candidate avoided it picks any other listed
// node, which answers 421 naming the primary it knows.
func (c *Client) primaryAvoiding(avoid map[string]bool) (NodeInfo, error) {
	nodes := c.resolver.StoreNodes()
	c.mu.Lock()
	known := c.known
	c.mu.Unlock()
	if known.Addr != "" && !avoid[known.Name] {
		for _, n := range nodes {
			if n.Name == known.Name {
				n.Addr = known.Addr
				return n, nil
			}
		}
	}
	for _, n := range nodes {
		if n.Primary && !avoid[n.Name] && !c.isSilent(n.Name) {
			return n, nil
		}
	}
	var others, answering []NodeInfo
	for _, n := range nodes {
		if !avoid[n.Name] {
			others = append(others, n)
			if !c.isSilent(n.Name) {
				answering = append(answering, n)
			}
		}
	}
	if len(answering) > 0 {
		others = answering // a node that just failed to answer would again
	}
	if len(others) == 0 {
		others = nodes // every node refused: try them all again
	}
	if len(others) > 0 {
		return others[int(c.rr.Add(1)%uint64(len(others)))], nil
	}
	return NodeInfo{}, fmt.Errorf("no store node known: %w", ErrUnavailable)
}

// notSent reports whether err says the request never reached the node
// (the connection was refused or could not be made), so resending it
// cannot apply it twice.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// forget drops the primary learned from X-Store-Primary when it is node:
// it did not answer, so the next call asks again rather than waiting on it
// forever.
func (c *Client) forget(node NodeInfo) {
	c.mu.Lock()
	if c.known.Name == node.Name {
		c.known = NodeInfo{}
	}
	if c.silent == nil {
		c.silent = map[string]time.Time{}
	}
	c.silent[node.Name] = time.Now().Add(silentFor)
	c.mu.Unlock()
}

// isSilent reports whether node failed to answer within silentFor.
func (c *Client) isSilent(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Before(c.silent[name])
}

// replicas returns the listed nodes other than the primary.
func (c *Client) replicas() []NodeInfo {
	p, _ := c.primary()
	var out []NodeInfo
	for _, n := range c.resolver.StoreNodes() {
		if n.Name != p.Name {
			out = append(out, n)
		}
	}
	return out
}

// read sends a read by the consistency of ctx: strong to the primary;
// session and eventual to a replica in turn (session with the LSN the
// replica must have applied, which it waits for briefly), falling back to
// the primary when the replica cannot answer.
func (c *Client) read(ctx context.Context, path string) ([]byte, error) {
	// Only this client's group's LSN means anything to its nodes.
	level, atLeast := ConsistencyLSNs(ctx)
	minLSN := atLeast.Get(c.group)
	if tr := TraceFrom(ctx); tr != nil && level == Session {
		// What this caller has already seen (its own writes of this
		// request included) is the least a session read may show.
		_, seen := tr.Seen()
		minLSN = max(minLSN, seen.Get(c.group))
	}
	if level != Strong {
		if reps := c.replicas(); len(reps) > 0 {
			n := reps[int(c.rr.Add(1)%uint64(len(reps)))]
			h := http.Header{}
			if level == Session && minLSN > 0 {
				h.Set(HeaderMinLSN, strconv.FormatUint(minLSN, 10))
			}
			rctx, cancel := context.WithTimeout(ctx, replicaTry(ctx))
			body, err := c.doH(rctx, n, http.MethodGet, c.scheme+n.Addr+path, nil, h)
			cancel()
			if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) || ctx.Err() != nil {
				return body, err
			}
			// Behind, down, silent or refusing: the primary has everything.
		}
	}
	var last error
	var refused map[string]bool
	for attempt := 0; attempt < 3; attempt++ {
		p, err := c.primaryAvoiding(refused)
		if err != nil {
			return nil, err
		}
		h := http.Header{}
		h.Set(HeaderConsistency, Strong.String())
		body, err := c.doH(ctx, p, http.MethodGet, c.scheme+p.Addr+path, nil, h)
		if notSent(err) && ctx.Err() == nil {
			// A dead primary: another node names the new one.
			if refused == nil {
				refused = map[string]bool{}
			}
			refused[p.Name] = true
		} else if !errors.Is(err, ErrNotPrimary) {
			return body, err
		}
		last = err
	}
	return nil, last
}

// maxReplicaTry bounds one read from a replica. A replica that took the
// connection but does not answer (a paused process, whose kernel still
// accepts; a host cut off after the request left) would otherwise hold the
// read for the caller's whole deadline and never let it reach the primary:
// with a replica paused, the app's session reads that went to it waited out
// their 3 s window and answered 503 (found by internal/faultrun). A working
// replica answers within about 100 ms even when it must first wait for the
// caller's LSN (then 425), so five times that passes over only replicas
// that are not working, at the cost of that much latency for the reads
// that tried one.
const maxReplicaTry = 500 * time.Millisecond

// replicaTry is how long a read may wait for a replica: maxReplicaTry, or
// half of what is left of ctx's deadline if that is less, so that the
// primary always has the other half.
func replicaTry(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return min(maxReplicaTry, time.Until(dl)/2)
	}
	return maxReplicaTry
}

// do sends one request and returns the body of a 2xx answer. Other answers
// become errors wrapping the sentinel of their status; transport failures
// wrap ErrUnavailable.
func (c *Client) do(ctx context.Context, node NodeInfo, method, u string, in any) ([]byte, error) {
	return c.doH(ctx, node, method, u, in, nil)
}

// doH is do with extra request headers.
func (c *Client) doH(ctx context.Context, node NodeInfo, method, u string, in any, h http.Header) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		r, err := jsonBody(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = r
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrInvalid)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	SetGroupHeader(req.Header, c.group)
	// The caller's span (an app's request, a worker's job) is the parent
	// of the store node's work: the same trace id in both logs.
	if tp := tracectx.Traceparent(ctx); tp != "" {
		req.Header["Traceparent"] = []string{tp}
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
		c.mu.Lock()
		if c.epoch > 0 {
			req.Header.Set(HeaderEpoch, strconv.FormatUint(c.epoch, 10))
		}
		c.mu.Unlock()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			c.forget(node)
		} // else the caller gave up, which says nothing about the node
		return nil, fmt.Errorf("node %s (%s): %w: %w", node.Name, node.Addr, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	c.learn(resp.Header)
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("node %s (%s): read answer: %w: %w", node.Name, node.Addr, ErrUnavailable, err)
	}
	if tr := TraceFrom(ctx); tr != nil {
		name := resp.Header.Get(HeaderNode)
		if name == "" {
			name = node.Name
		}
		lsn, _ := strconv.ParseUint(resp.Header.Get(HeaderLSN), 10, 64)
		tr.RecordIn(c.group, name, lsn)
	}
	if resp.StatusCode/100 == 2 {
		return out, nil
	}
	var we WireError
	msg := string(out)
	if json.Unmarshal(out, &we) == nil && we.Error != "" {
		msg = we.Error
	}
	return nil, fmt.Errorf("node %s: %s: %w", node.Name, msg, ErrorOf(resp.StatusCode))
}

// learn notes the epoch and the primary an answer names. A higher epoch
// always wins; a node of an older epoch does not get to name the primary.
func (c *Client) learn(h http.Header) {
	e, _ := strconv.ParseUint(h.Get(HeaderEpoch), 10, 64)
	name, addr, ok := strings.Cut(h.Get(HeaderPrimary), "=")
	c.mu.Lock()
	defer c.mu.Unlock()
	if e < c.epoch {
		return
	}
	c.epoch = e
	if ok && name != "" && addr != "" {
		c.known = NodeInfo{Name: name, Addr: addr, Primary: true}
	}
}

// ErrorOf maps an HTTP status of the store's API back to the sentinel
// error; StatusOf is its inverse.
func ErrorOf(code int) error {
	switch code {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConditionFailed
	case http.StatusRequestEntityTooLarge:
		return ErrTooLarge
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		return ErrInvalid
	case http.StatusGone:
		return ErrCompacted
	case http.StatusMisdirectedRequest:
		return ErrNotPrimary
	case http.StatusTooEarly:
		return ErrBehind
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return ErrUnavailable
	case http.StatusUnauthorized:
		return ErrUnauthorized
	}
	return errors.New("status " + strconv.Itoa(code))
}

// The Client is a Store (and so is the engine, boltdb.DB).
var _ Store = (*Client)(nil)
