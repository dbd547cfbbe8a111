package app

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/internal/ratelimit"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// The blog limits how often one client address and one account may try
// the actions an abuser repeats: logging in (guessing passwords), signing
// up (making accounts in bulk), posting and commenting (spam). Each limit
// is a token bucket (pkg/app/internal/ratelimit) held in the app node's
// memory: Burst attempts at once, then one more every Every. A refused
// request gets 429 Too Many Requests with Retry-After, and is counted
// (scalestack_app_rate_limited_total{action,by}, /status rate_limited).
//
// The buckets are per app node: behind a round-robin load balancer over N
// app nodes a client gets up to N times each limit. That keeps the limits
// free of any shared state (a store write per login attempt would make
// the limit itself a load on the store).

// Limit is one token bucket: Burst attempts at once, then one more every
// Every. A zero Burst means no limit.
type Limit struct {
	Burst int
	Every time.Duration
}

func (l Limit) String() string {
	if l.Burst == 0 {
		return "none"
	}
	return fmt.Sprintf("%d, then 1/%v", l.Burst, l.Every)
}

// RateLimits are the limits of one app node, per client address ("IP")
// and per account. Each is counted on every attempt, except
// LoginFailuresPerAccount, which counts the log-ins that failed.
type RateLimits struct {
	// LoginPerIP bounds log-in attempts from one address, whatever the
	// handle: a password guesser. Default 30, then one every 2s (30 a
	// minute): a person who mistypes is never stopped; a guesser gets 43
	// thousand tries a day per address and app node instead of millions.
	LoginPerIP Limit
	// LoginFailuresPerAccount bounds failed log-ins to one handle, from any
	// address: a guesser spread over many addresses. Default 10, then one a
	// minute. The price: someone who knows a handle can keep its owner
	// from logging in on this app node (the owner gets 429, not a wrong
	// password) for as long as they keep failing.
	LoginFailuresPerAccount Limit
	// SignupPerIP bounds sign-ups from one address. Default 50, then one
	// every 6s: room for a household or an office behind one address, and
	// for `node load` with up to 50 users; a bulk sign-up gets 600 accounts
	// an hour per address and app node.
	SignupPerIP Limit
	// PostPerAccount and PostPerIP bound new posts (the JSON API and the
	// form). Defaults 30, then one every 10s per account; 200, then 5 a
	// second per address (`node seed` writes 100 posts from one address).
	PostPerAccount, PostPerIP Limit
	// CommentPerAccount and CommentPerIP bound new comments. Defaults 60,
	// then one every 5s per account; 300, then 5 a second per address.
	CommentPerAccount, CommentPerIP Limit
	// MaxKeys bounds how many addresses or accounts each limit remembers
	// (about 100 bytes each). Past it, full buckets are forgotten, then a
	// quarter at random: a flood of addresses costs bounded memory, and some
	// of them get a fresh bucket early. Default 100000.
	MaxKeys int
}

// DefaultRateLimits returns the limits documented on RateLimits.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		LoginPerIP:              Limit{30, 2 * time.Second},
		LoginFailuresPerAccount: Limit{10, time.Minute},
		SignupPerIP:             Limit{50, 6 * time.Second},
		PostPerAccount:          Limit{30, 10 * time.Second},
		PostPerIP:               Limit{200, 200 * time.Millisecond},
		CommentPerAccount:       Limit{60, 5 * time.Second},
		CommentPerIP:            Limit{300, 200 * time.Millisecond},
		MaxKeys:                 100_000,
	}
}

// Validate reports the first unusable limit.
func (rl *RateLimits) Validate() error {
	for _, l := range rl.table() {
		if l.limit.Burst < 0 || l.limit.Burst > 0 && l.limit.Every <= 0 {
			return fmt.Errorf("rate limit %s %s: %v: want a Burst of 0 (no limit) or more with a positive Every", l.action, l.by, l.limit)
		}
	}
	if rl.MaxKeys < 1 {
		return fmt.Errorf("rate limits: MaxKeys %d: want at least 1", rl.MaxKeys)
	}
	return nil
}

// Actions and what a limit is keyed by.
const (
	actLogin   = "login"
	actSignup  = "signup"
	actPost    = "post"
	actComment = "comment"

	byIP      = "ip"
	byAccount = "account"
)

type limitEntry struct {
	action, by string
	limit      Limit
}

func (rl *RateLimits) table() []limitEntry {
	return []limitEntry{
		{actLogin, byIP, rl.LoginPerIP},
		{actLogin, byAccount, rl.LoginFailuresPerAccount},
		{actSignup, byIP, rl.SignupPerIP},
		{actPost, byIP, rl.PostPerIP},
		{actPost, byAccount, rl.PostPerAccount},
		{actComment, byIP, rl.CommentPerIP},
		{actComment, byAccount, rl.CommentPerAccount},
	}
}

// DefaultTrustedProxies are the networks whose X-Forwarded-For the app
// believes by default: loopback, where the stacks of `node up` run their lb
// and edge (and where anyone who could forge the header could also reach
// everything else).
func DefaultTrustedProxies() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// limiter holds one app node's rate limits.
type limiter struct {
	sets    map[string]*ratelimit.Set // "action/by" -> buckets; absent: no limit
	proxies []netip.Prefix
	now     func() time.Time

	refused     map[string]*atomic.Uint64 // "action/by" -> requests refused
	refusedDesc *prometheus.Desc
}

func newLimiter(on bool, rl RateLimits, proxies []netip.Prefix) *limiter {
	l := &limiter{sets: map[string]*ratelimit.Set{}, proxies: proxies, now: time.Now, refused: map[string]*atomic.Uint64{},
		refusedDesc: prometheus.NewDesc("scalestack_app_rate_limited_total",
			"Requests the app refused with 429 because a rate limit was reached, by action (login, signup, post, comment) and by what was limited (ip, account).",
			[]string{"action", "by"}, nil)}
	for _, e := range rl.table() {
		name := e.action + "/" + e.by
		l.refused[name] = &atomic.Uint64{}
		if on && e.limit.Burst > 0 {
			l.sets[name] = ratelimit.New(e.limit.Burst, e.limit.Every, rl.MaxKeys)
		}
	}
	return l
}

// Describe implements prometheus.Collector.
func (l *limiter) Describe(ch chan<- *prometheus.Desc) { ch <- l.refusedDesc }

// Collect implements prometheus.Collector.
func (l *limiter) Collect(ch chan<- prometheus.Metric) {
	for name, n := range l.refused {
		action, by, _ := strings.Cut(name, "/")
		ch <- prometheus.MustNewConstMetric(l.refusedDesc, prometheus.CounterValue, float64(n.Load()), action, by)
	}
}

// status returns the refusals so far, by "action/by", for /status.
func (l *limiter) status() map[string]uint64 {
	out := make(map[string]uint64, len(l.refused))
	for name, n := range l.refused {
		out[name] = n.Load()
	}
	return out
}

// take takes a token for action from the bucket of key under limit by; it
// returns how long to wait when there is none.
func (l *limiter) take(action, by, key string) (bool, time.Duration) {
	s := l.sets[action+"/"+by]
	if s == nil || key == "" {
		return true, 0
	}
	ok, wait := s.Take(key, l.now())
	if !ok {
		l.refused[action+"/"+by].Add(1)
	}
	return ok, wait
}

// giveBack returns a token taken for action under by (an attempt that
// does not count).
func (l *limiter) giveBack(action, by, key string) {
	if s := l.sets[action+"/"+by]; s != nil && key != "" {
		s.Return(key, l.now())
	}
}

// clientKey is what the per-address limits key r by: the client's address
// (see clientAddr), and for IPv6 its /64, which is what one subscriber
// usually has to spend.
func (l *limiter) clientKey(r *http.Request) string {
	a := clientAddr(r, l.proxies)
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// clientAddr returns the address of the client that sent r. It is the
// connection's peer, unless the peer is a trusted proxy (the lb or an edge
// on a network in proxies): then it is read from X-Forwarded-For, to which
// each of our proxies appends the address it was reached from. The list
// is walked from the right, past every trusted proxy, and the first
// address that is not one is the client; what lies left of it was written
// by the client and is ignored, so a client cannot choose its own address.
// A client that reaches the app port directly, from a network that is not
// trusted, is its peer address, whatever it puts in the header.
func clientAddr(r *http.Request, proxies []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(r.RemoteAddr)
		if splitErr != nil {
			host = r.RemoteAddr
		}
		a, perr := netip.ParseAddr(host)
		if perr != nil {
			return netip.Addr{}
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	addr := ap.Addr().Unmap()
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0 && trusted(addr, proxies); i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		a, err := netip.ParseAddr(hop)
		if err != nil {
			if p, perr := netip.ParseAddrPort(hop); perr == nil {
				a, err = p.Addr(), nil
			}
		}
		if err != nil {
			break // not an address: stop at the last proxy we could read
		}
		addr = a.Unmap()
	}
	return addr
}

func trusted(a netip.Addr, proxies []netip.Prefix) bool {
	for _, p := range proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// allow takes a token for action from the client address's bucket and, if
// account is not empty, the account's; when one is empty it answers 429
// with Retry-After and reports false. An account token taken for a log-in
// is given back when the log-in succeeds (see loginDone).
func (w *web) allow(rw http.ResponseWriter, r *http.Request, action, account string) bool {
	ok, wait := w.limits.take(action, byIP, w.limits.clientKey(r))
	what := "from your address"
	if ok && account != "" {
		if ok, wait = w.limits.take(action, byAccount, account); !ok {
			what = "for this account"
			if action == actLogin {
				what = "that failed for this account"
			}
		}
	}
	if ok {
		return true
	}
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	rw.Header().Set("Retry-After", strconv.Itoa(secs))
	w.fail(rw, r, http.StatusTooManyRequests, fmt.Sprintf("too many %s attempts %s; try again in %d s", action, what, secs), "")
	return false
}

// loginAccount is the key of a log-in's per-account limit: the handle as
// it would be looked up, or one shared key for handles that cannot exist
// (they always fail, and must not each cost memory).
func loginAccount(handle string) string {
	h := accounts.NormalizeHandle(handle)
	if accounts.ValidHandle(h) != "" {
		return "(not a handle)"
	}
	return h
}

// loginDone ends a log-in attempt for the per-account limit, which counts
// failures only: anything but a wrong password gives the token back.
func (w *web) loginDone(handle string, err error) {
	if !errors.Is(err, svc.ErrBadCredentials) {
		w.limits.giveBack(actLogin, byAccount, loginAccount(handle))
	}
}
