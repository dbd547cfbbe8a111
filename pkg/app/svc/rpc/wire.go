// Package rpc is how the blog's services are called over the network at
// stage 10: the wire convention a service node and its callers share, the
// server side that exposes a service's methods (Server, Handle) and the
// client the gateway calls them with (Client, Call).
//
// A call is POST /v1/{service}/{method} with the arguments as a JSON object
// and the result as JSON. A failure is a JSON object {"error","code","field"}
// under an HTTP status, and both sides read one table (codes, below) that
// maps each of pkg/app/svc's sentinel errors to a code and a status, so that
// errors.Is(err, svc.ErrNotFound) holds on the caller's side after the hop,
// as it does when the service runs in-process. The caller's deadline travels
// in X-Timeout-Ms, a W3C traceparent in traceparent, and the caller's store
// consistency (its session's LSN per store group) in X-Store-Consistency and
// X-Store-LSN, answered with the LSNs the handler saw, so that a user reads
// their own writes through every service (docs/services.md).
//
// The package knows svc's errors and nothing of any service: the gateway and
// each service import it without importing one another. Instances come from
// a function the node builds from membership (Config.Instances), so the
// package needs no membership of its own (internal/importrules).
package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// Method names one method of a service and the types of its arguments and
// result. A service declares its methods once, as values, and both its
// server (Handle) and its callers (Call) use them, so the two sides cannot
// disagree on a name, a type or whether a call may be repeated:
//
//	var Query = rpc.Method[QueryReq, QueryResp]{Name: "query", Idempotent: true}
type Method[Req, Resp any] struct {
	// Name is the last segment of the path: lowercase letters, digits, '_'
	// and '-'.
	Name string
	// Idempotent says that calling the method twice does what calling it
	// once does (reads; writes that set a value rather than add to one).
	// The client retries such a call on another instance after a failure
	// that may have reached the server; a call that is not idempotent is
	// retried only when it carries an idempotency key
	// (WithIdempotencyKey) or when nothing of it was sent.
	Idempotent bool
	// Key, when set, returns the idempotency key a call's arguments carry
	// (a payment's Key): Call sends it as Idempotency-Key, unless the
	// context has one already (WithIdempotencyKey), so that a keyed write
	// is retried like an idempotent call without each caller having to
	// remember the header. An empty key adds nothing. The handler still
	// reads the key itself, from its argument or IdempotencyKey.
	Key func(Req) string
	// MaxBodyBytes bounds the request body the server accepts for this
	// method. Zero: the Server's MaxBodyBytes.
	MaxBodyBytes int64
}

// PathPrefix starts the path of every call: PathPrefix + service + "/" + method.
const PathPrefix = "/v1/"

// Path returns the path of method on service.
func Path(service, method string) string { return PathPrefix + service + "/" + method }

// Headers of a call.
const (
	// HeaderTimeout carries the time the caller still gives the call, in
	// whole milliseconds, counted when the request is sent. It is relative,
	// as gRPC's grpc-timeout, because the caller's and the server's clocks
	// need not agree; the server counts it from the request's arrival, so
	// its deadline falls later than the caller's by the time in transit.
	HeaderTimeout = "X-Timeout-Ms"
	// HeaderTraceparent is W3C Trace Context's traceparent: the caller's span
	// (internal/tracectx), which the handler continues as a child.
	HeaderTraceparent = "traceparent"
	// HeaderIdempotencyKey marks a call that the server deduplicates by
	// key (the IETF draft's Idempotency-Key, as the lb reads it).
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderServedBy names the instance that answered, then the instances
	// its handler's own calls reached, comma-separated (Trail).
	HeaderServedBy = "X-Served-By"
	// HeaderStoreConsistency carries, on a call, how fresh the handler's
	// store reads must be: the caller's store.ConsistencyLSNs level
	// (strong, session or eventual). Sent with HeaderStoreLSN when the
	// caller's context has a consistency other than strong, or LSNs.
	HeaderStoreConsistency = "X-Store-Consistency"
	// HeaderStoreLSN carries, on a call, the LSN per store group the
	// handler's reads must have reached (the caller's session: a user
	// reads their own writes through a service), and on an answer the
	// highest LSN per group the handler's store calls saw (its writes'
	// commits), which the client records into the caller's store.Trace:
	// the store.LSNs form, "123,content=45".
	HeaderStoreLSN = "X-Store-LSN"
	// HeaderStoreNode names, on an answer with HeaderStoreLSN, the store
	// node that answered the handler's last store call.
	HeaderStoreNode = "X-Store-Node"
)

// consistencies are the levels HeaderStoreConsistency names.
var consistencies = []store.Consistency{store.Strong, store.Session, store.Eventual}

// storeHeaders sets on h the consistency of the calls made with ctx, if
// it asks for anything but strong reads with no LSN (what a handler gets
// without the headers).
func storeHeaders(ctx context.Context, h http.Header) {
	level, lsns := store.ConsistencyLSNs(ctx)
	if level == store.Strong && len(lsns) == 0 {
		return
	}
	h.Set(HeaderStoreConsistency, level.String())
	h.Set(HeaderStoreLSN, lsns.String())
}

// withStoreHeaders returns ctx with the consistency a call's headers ask
// for: the level (session when only LSNs are given, as a curl user would)
// and the LSNs.
func withStoreHeaders(ctx context.Context, h http.Header) (context.Context, error) {
	lv, lsnv := h.Get(HeaderStoreConsistency), h.Get(HeaderStoreLSN)
	if lv == "" && lsnv == "" {
		return ctx, nil
	}
	level := store.Session
	if lv != "" {
		i := slices.IndexFunc(consistencies, func(c store.Consistency) bool { return c.String() == lv })
		if i < 0 {
			return ctx, fmt.Errorf("%s %q: want strong, session or eventual", HeaderStoreConsistency, lv)
		}
		level = consistencies[i]
	}
	lsns, err := store.ParseLSNs(lsnv)
	if err != nil {
		return ctx, fmt.Errorf("%s: %w", HeaderStoreLSN, err)
	}
	return store.WithConsistencyLSNs(ctx, level, lsns), nil
}

// recordStore records the store LSNs an answer's headers report into the
// caller's store.Trace, when ctx has one.
func recordStore(ctx context.Context, h http.Header) {
	tr := store.TraceFrom(ctx)
	v := h.Get(HeaderStoreLSN)
	if tr == nil || v == "" {
		return
	}
	lsns, err := store.ParseLSNs(v)
	if err != nil {
		return // not the wire's: nothing to learn from it
	}
	tr.RecordAll(h.Get(HeaderStoreNode), lsns)
}

// Errors of the wire itself, beside svc's. Each is matched with errors.Is.
var (
	// ErrUnavailable: no instance could serve the call (none known, all
	// failing, or the one asked said that it or its store is down). Nothing
	// was done; the call may be made again later.
	ErrUnavailable = errors.New("service unavailable")
	// ErrOutcomeUnknown: a call that may not be repeated was sent and no
	// answer came back (a timeout, a connection lost mid-call), or the
	// service said that its own write's outcome is unknown (its store's
	// replicas did not confirm it in time). It may or may not have taken
	// effect; the client does not retry it. Make the call with an
	// idempotency key to make retrying safe.
	ErrOutcomeUnknown = errors.New("outcome unknown: the call may have taken effect")
	// ErrBadRequest: the server could not read the call (malformed JSON, a
	// wrong header). A bug on the caller's side, never retried.
	ErrBadRequest = errors.New("bad request")
	// ErrUnknownMethod: the server has no such service or method (a caller
	// newer than the instance it reached).
	ErrUnknownMethod = errors.New("unknown method")
	// ErrUnauthorized: the server refused the caller's token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrInternal: the service failed for a reason of its own; the details
	// are in its log, not on the wire.
	ErrInternal = errors.New("internal error")
)

// A code says which error a failed call returned, in the "code" member of
// the error body. The status goes with it so that a curl user or a proxy
// reads the failure without knowing the codes; the caller decodes the code.
type code struct {
	name   string
	status int
	err    error // what the caller's error matches; nil for "invalid" (a FieldError alone)
	// hop marks the codes about one hop (the server could not read the call,
	// or refused the caller): only the server itself answers them. A
	// handler whose own call to another service failed so returns them as
	// internal, since its caller did nothing wrong.
	hop bool
}

// codes is the one table of the wire's errors, read in both directions:
// encodeError walks it in order (the first sentinel the error matches
// wins), decodeError looks a code up by name. Two codes may share a status
// (409 for exists and conflict); a code never has two statuses.
var codes = []code{
	{"not_found", http.StatusNotFound, svc.ErrNotFound, false},
	{"exists", http.StatusConflict, svc.ErrExists, false},
	{"conflict", http.StatusConflict, svc.ErrConflict, false},
	{"bad_credentials", http.StatusUnauthorized, svc.ErrBadCredentials, false},
	{"forbidden", http.StatusForbidden, svc.ErrForbidden, false},
	{"too_large", http.StatusRequestEntityTooLarge, svc.ErrTooLarge, false},
	{"unsupported", http.StatusUnsupportedMediaType, svc.ErrUnsupported, false},
	{"invalid", http.StatusBadRequest, nil, false},
	{"bad_request", http.StatusBadRequest, ErrBadRequest, true},
	{"unknown_method", http.StatusNotFound, ErrUnknownMethod, true},
	{"unauthorized", http.StatusUnauthorized, ErrUnauthorized, true},
	{"unavailable", http.StatusServiceUnavailable, ErrUnavailable, false},
	{"deadline", http.StatusGatewayTimeout, context.DeadlineExceeded, false},
	{"outcome_unknown", http.StatusInternalServerError, ErrOutcomeUnknown, false},
	{"internal", http.StatusInternalServerError, ErrInternal, false},
}

// Code is an error of one service's own on the wire, beside the table's
// (a payment declined, say): the service declares its codes once, as it
// does its Methods, and gives the same list to its Server
// (ServerConfig.Codes) and to its callers' Client (Config.Codes), so both
// read one table. A service's codes are tried before the table's, so one
// may name an error that wraps a svc sentinel more precisely; the caller's
// error is then Err, which still matches the sentinel.
type Code struct {
	// Name is the "code" member: lowercase letters, digits, '_' and '-',
	// none of the table's names.
	Name string
	// Status is the HTTP status, 400 to 599. A 5xx counts against the
	// instance's breaker, as any 5xx does.
	Status int
	// Err is what the error matches on both sides, with errors.Is.
	Err error
}

// ownCodes checks a service's codes and turns them into the table's form;
// field names the config field, for the error.
func ownCodes(field string, cs []Code) ([]code, error) {
	own := make([]code, 0, len(cs))
	for i, c := range cs {
		switch _, builtin := codeNamed(c.Name, nil); {
		case !validName(c.Name):
			return nil, fmt.Errorf("rpc: %s[%d].Name %q: want lowercase letters, digits, '_' or '-'", field, i, c.Name)
		case builtin:
			return nil, fmt.Errorf("rpc: %s[%d].Name %q is one of the wire's own codes", field, i, c.Name)
		case c.Status < 400 || c.Status > 599:
			return nil, fmt.Errorf("rpc: %s[%d] (%s): Status %d is not an error status (400-599)", field, i, c.Name, c.Status)
		case c.Err == nil:
			return nil, fmt.Errorf("rpc: %s[%d] (%s): Err is nil", field, i, c.Name)
		}
		if _, dup := codeNamed(c.Name, own); dup {
			return nil, fmt.Errorf("rpc: %s[%d]: code %q listed twice", field, i, c.Name)
		}
		own = append(own, code{name: c.Name, status: c.Status, err: c.Err})
	}
	return own, nil
}

// codeNamed finds a code by name among a service's own, then the table's.
func codeNamed(name string, own []code) (code, bool) {
	for _, tab := range [][]code{own, codes} {
		for _, c := range tab {
			if c.name == name {
				return c, true
			}
		}
	}
	return code{}, false
}

// causes are errors beside the table's sentinels that are sent under one
// of its codes, tried before the sentinels: the errors of a service's
// store. Those that mean "not now, and nothing was done" (the store failing
// over, unreachable, a replica behind) are unavailable; a write the primary
// made but its replicas did not confirm in time may or may not last, which
// the caller must learn as such; a value over the store's limit is the
// input's fault, as the app already answers it (413).
var causes = []struct {
	err  error
	code string
}{
	{ErrUnavailable, "unavailable"},
	{store.ErrUnavailable, "unavailable"},
	{store.ErrNotPrimary, "unavailable"},
	{store.ErrStaleEpoch, "unavailable"},
	{store.ErrBehind, "unavailable"},
	{store.ErrClosed, "unavailable"},
	{ErrOutcomeUnknown, "outcome_unknown"},
	{store.ErrSyncTimeout, "outcome_unknown"},
	{store.ErrTooLarge, "too_large"},
}

// WireError is the body of every failed call.
type WireError struct {
	// Error is a message for a person; for a FieldError, its Msg.
	Error string `json:"error"`
	// Code is one of the table's codes (not_found, exists, invalid, ...).
	Code string `json:"code"`
	// Field names the input field a FieldError is about.
	Field string `json:"field,omitempty"`
}

// encodeError returns the status and body that err is sent as. An error
// that matches no code is "internal", and its text stays in the server's
// log: the wire says only that the service failed.
func encodeError(err error, own []code) (int, WireError) {
	var fe *svc.FieldError
	if errors.As(err, &fe) {
		c, _ := codeNamed("invalid", nil)
		if fe.Err != nil {
			if s, ok := sentinelCode(fe.Err, own); ok {
				c = s
			}
		}
		if !c.hop {
			return c.status, WireError{Error: fe.Msg, Code: c.name, Field: fe.Field}
		}
	}
	for _, c := range own {
		if errors.Is(err, c.err) {
			return c.status, WireError{Error: err.Error(), Code: c.name}
		}
	}
	for _, cause := range causes {
		if errors.Is(err, cause.err) {
			c, _ := codeNamed(cause.code, nil)
			return c.status, WireError{Error: err.Error(), Code: c.name}
		}
	}
	if c, ok := sentinelCode(err, nil); ok && !c.hop && c.name != "internal" {
		return c.status, WireError{Error: err.Error(), Code: c.name}
	}
	return http.StatusInternalServerError, WireError{Error: ErrInternal.Error(), Code: "internal"}
}

// sentinelCode finds the first code whose error err matches, among a
// service's own, then the table's.
func sentinelCode(err error, own []code) (code, bool) {
	for _, tab := range [][]code{own, codes} {
		for _, c := range tab {
			if c.err != nil && errors.Is(err, c.err) {
				return c, true
			}
		}
	}
	return code{}, false
}

// decodeError turns a failed answer back into an error for the caller:
// a *svc.FieldError when the body names a field, else the code's sentinel.
// A body that is not the wire's (a proxy's page, a truncated answer) is
// judged by its status alone, as any HTTP client would.
func decodeError(status int, body []byte, own []code) (WireError, error) {
	var we WireError
	if err := json.Unmarshal(body, &we); err != nil || we.Code == "" {
		we = WireError{Error: statusText(status, body)}
	}
	c, ok := codeNamed(we.Code, own)
	if !ok {
		return we, byStatus(status)
	}
	if we.Field != "" || c.name == "invalid" {
		return we, &svc.FieldError{Field: we.Field, Msg: we.Error, Err: c.err}
	}
	return we, c.err
}

// byStatus is what a status means without a code: only the statuses a
// proxy or a server in trouble answers have a meaning of their own.
func byStatus(status int) error {
	switch {
	case status == http.StatusBadGateway, status == http.StatusServiceUnavailable:
		return ErrUnavailable
	case status == http.StatusGatewayTimeout:
		return context.DeadlineExceeded
	case status >= 500:
		return ErrInternal
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	}
	return ErrBadRequest
}

// statusText is a message for an answer without a wire body: its status,
// and the start of what it said.
func statusText(status int, body []byte) string {
	msg := strconv.Itoa(status) + " " + http.StatusText(status)
	if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		msg += ": " + s
	}
	return msg
}

// Error is a failed call as the caller sees it: which service, method and
// instance, and what the server answered. It unwraps to the svc sentinel
// or *svc.FieldError the service returned (or one of this package's
// errors), so callers test it as they would an in-process error.
type Error struct {
	Service  string
	Method   string
	Instance string // the instance that answered
	Status   int    // the HTTP status of the answer
	Wire     WireError
	err      error
}

func (e *Error) Error() string {
	msg := e.Wire.Error
	if e.Wire.Field != "" {
		msg = e.Wire.Field + ": " + msg
	}
	return fmt.Sprintf("%s.%s on %s: %s", e.Service, e.Method, e.Instance, msg)
}

// Unwrap returns the error the answer decodes to.
func (e *Error) Unwrap() error { return e.err }

// Context values that travel with a call.
type (
	idempotencyKey struct{} // the key of the calls made with a context
	receivedKey    struct{} // the key a handler's call came with
)

// WithIdempotencyKey returns ctx whose calls carry key: the server does
// the call's work once per key, so the client may retry it like an
// idempotent call. A key names one intended effect (one charge), so a new
// effect needs a new key. Empty removes nothing and adds nothing.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	if key == "" {
		return ctx
	}
	return context.WithValue(ctx, idempotencyKey{}, key)
}

// IdempotencyKey returns the key that the call a handler serves came with,
// or "": the service keeps what it did under it. It is not sent on with
// the calls the handler makes with ctx, since the key names this call's
// effect; a handler that wants its own calls deduplicated gives them keys
// of their own (derived from this one, say) with WithIdempotencyKey.
func IdempotencyKey(ctx context.Context) string {
	k, _ := ctx.Value(receivedKey{}).(string)
	return k
}

// sendKey is the key the calls made with ctx carry.
func sendKey(ctx context.Context) string {
	k, _ := ctx.Value(idempotencyKey{}).(string)
	return k
}

// timeoutValue is the X-Timeout-Ms of a call whose deadline is d: whole
// milliseconds left, rounded down so that the server never believes it has
// more time than the caller gives, and at least 1 while any time is left.
func timeoutValue(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10)
}

// parseTimeout reads X-Timeout-Ms: a positive count of milliseconds.
func parseTimeout(v string) (time.Duration, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 || ms > int64(24*time.Hour/time.Millisecond) {
		return 0, fmt.Errorf("%s %q is not a count of milliseconds between 1 and 86400000", HeaderTimeout, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}
