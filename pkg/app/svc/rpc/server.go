package rpc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/store"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Service is the service's name, the first segment of every path
	// (users, content, search, ...). Required.
	Service string
	// Instance names this instance in X-Served-By and in the caller's
	// errors: the node's name. Empty: the header is not set.
	Instance string
	// MaxBodyBytes bounds a call's request body unless its Method sets its
	// own. Zero: 1 MiB, far above any call but an upload.
	MaxBodyBytes int64
	// Timeout is the deadline of a call that comes without X-Timeout-Ms
	// (a curl user). Zero: 30s. A caller's X-Timeout-Ms above MaxTimeout
	// is cut to MaxTimeout.
	Timeout time.Duration
	// MaxTimeout bounds the deadline a caller may ask for. Zero: 60s.
	MaxTimeout time.Duration
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every call (derived from --cluster-key, as the store's); a call
	// without it is answered 401 "unauthorized". Empty: no check.
	Token string
	// Codes are the service's own errors on the wire (see Code); its
	// callers' Config.Codes must be the same list. Nil: the table's only.
	Codes []Code
	// Logger logs the calls that fail on the service's side (5xx). Nil:
	// slog.Default().
	Logger *slog.Logger
}

// Server is an http.Handler that serves one service's methods at
// /v1/{service}/{method}. Register each method with Handle, then serve;
// methods may be added while serving. It answers every failure in the
// wire's JSON: 401 without the token, 404 unknown method, 405 not POST,
// 415 not JSON, 400 a bad header, 413 over the body limit, 400 malformed
// JSON.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	codes []code // the service's own

	mu      sync.RWMutex
	methods map[string]handler
}

// handler is a registered method with its types erased.
type handler struct {
	maxBody int64
	call    func(ctx context.Context, body []byte) (any, error)
}

// NewServer returns a Server with no methods.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Service == "" || !validName(cfg.Service) {
		return nil, fmt.Errorf("rpc: ServerConfig.Service %q: want a name of lowercase letters, digits, '_' or '-'", cfg.Service)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = 60 * time.Second
	}
	own, err := ownCodes("ServerConfig.Codes", cfg.Codes)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg, log: log, codes: own, methods: map[string]handler{}}, nil
}

// Handle registers fn as method m of s. The handler's context carries the
// caller's deadline, its traceparent (Traceparent) and its idempotency key
// (IdempotencyKey); fn's error is sent by the wire's table, so a service
// returns svc's errors as it does in-process. Registering a name twice, or
// a name that is not valid, is a wiring bug and panics.
func Handle[Req, Resp any](s *Server, m Method[Req, Resp], fn func(ctx context.Context, req Req) (Resp, error)) {
	if !validName(m.Name) {
		panic(fmt.Sprintf("rpc: Handle: method name %q: want lowercase letters, digits, '_' or '-'", m.Name))
	}
	h := handler{maxBody: m.MaxBodyBytes, call: func(ctx context.Context, body []byte) (any, error) {
		var req Req
		if err := decodeStrict(body, &req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	}}
	if h.maxBody <= 0 {
		h.maxBody = s.cfg.MaxBodyBytes
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.methods[m.Name]; dup {
		panic("rpc: Handle: method " + s.cfg.Service + "." + m.Name + " registered twice")
	}
	s.methods[m.Name] = h
}

// requestError is a request the server could not read: it is answered
// with its own status under code bad_request (or too_large), never passed
// to a handler.
type requestError struct {
	status int
	code   string
	msg    string
}

func (e *requestError) Error() string { return e.msg }

// decodeStrict reads one JSON value into v. Unknown members are ignored,
// so that a caller deployed with a newer method (an added field) still
// reaches an older instance; anything after the value is an error.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &requestError{http.StatusBadRequest, "bad_request", "the body is empty: a call's arguments are a JSON object ({} for none)"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return &requestError{http.StatusBadRequest, "bad_request", "malformed JSON body: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &requestError{http.StatusBadRequest, "bad_request", "malformed JSON body: data after the JSON value"}
	}
	return nil
}

func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if s.cfg.Instance != "" {
		rw.Header().Set(HeaderServedBy, s.cfg.Instance)
	}
	// The token first: without it, the server says nothing of its methods.
	if s.cfg.Token != "" && !s.authorized(r) {
		s.reject(rw, &requestError{http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token (the cluster key's)"})
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, PathPrefix+s.cfg.Service+"/")
	s.mu.RLock()
	h, known := s.methods[name]
	s.mu.RUnlock()
	if !ok || !known {
		s.reject(rw, &requestError{http.StatusNotFound, "unknown_method",
			fmt.Sprintf("no method %s here: this is service %s, whose calls are POST %s{method}", r.URL.Path, s.cfg.Service, Path(s.cfg.Service, ""))})
		return
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		s.reject(rw, &requestError{http.StatusMethodNotAllowed, "bad_request", r.Method + " " + r.URL.Path + ": a call is a POST"})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			s.reject(rw, &requestError{http.StatusUnsupportedMediaType, "bad_request", "Content-Type " + ct + ": a call's body is application/json"})
			return
		}
	}
	timeout := s.cfg.Timeout
	if v := r.Header.Get(HeaderTimeout); v != "" {
		d, err := parseTimeout(v)
		if err != nil {
			s.reject(rw, &requestError{http.StatusBadRequest, "bad_request", err.Error()})
			return
		}
		timeout = min(d, s.cfg.MaxTimeout)
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, h.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.reject(rw, &requestError{http.StatusRequestEntityTooLarge, "too_large",
				fmt.Sprintf("the request body is over the limit of %d bytes for %s.%s", mbe.Limit, s.cfg.Service, name)})
			return
		}
		s.reject(rw, &requestError{http.StatusBadRequest, "bad_request", "reading the body: " + err.Error()})
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if tp := r.Header.Get(HeaderTraceparent); tp != "" {
		if sc, ok := tracectx.Continue(tp); ok { // a malformed one is dropped
			ctx = tracectx.NewContext(ctx, sc)
		}
	}
	if k := r.Header.Get(HeaderIdempotencyKey); k != "" {
		ctx = context.WithValue(ctx, receivedKey{}, k)
	}
	// Read-your-writes across the hop: the caller's LSNs bound the
	// handler's reads, and the LSNs the handler saw go back to the
	// caller's trace (its session then covers this service's group).
	ctx, err = withStoreHeaders(ctx, r.Header)
	if err != nil {
		s.reject(rw, &requestError{http.StatusBadRequest, "bad_request", err.Error()})
		return
	}
	var seen store.Trace
	ctx = store.WithTrace(ctx, &seen)
	ctx, trail := WithTrail(ctx)

	resp, err := s.invoke(ctx, name, h, body)
	if s.cfg.Instance != "" {
		// This instance, then those its handler's own calls reached.
		others := slices.DeleteFunc(trail.Hops(), func(h string) bool { return h == s.cfg.Instance })
		rw.Header().Set(HeaderServedBy, strings.Join(append([]string{s.cfg.Instance}, others...), ", "))
	}
	if node, lsns := seen.Seen(); node != "" {
		rw.Header().Set(HeaderStoreLSN, lsns.String())
		rw.Header().Set(HeaderStoreNode, node)
	}
	if err != nil {
		var re *requestError
		if errors.As(err, &re) {
			s.reject(rw, re)
			return
		}
		if r.Context().Err() != nil {
			// The caller went away: nobody reads the answer.
			s.log.Debug("rpc: caller gave up", "service", s.cfg.Service, "method", name, "err", err)
			return
		}
		s.fail(rw, name, err)
		return
	}
	out, err := json.Marshal(resp)
	if err != nil {
		s.fail(rw, name, fmt.Errorf("encode the result: %w", err))
		return
	}
	h2 := rw.Header()
	h2.Set("Content-Type", "application/json")
	h2.Set("Cache-Control", "no-store")
	rw.WriteHeader(http.StatusOK)
	_, _ = rw.Write(out)
}

// invoke calls h, turning a panic into an internal error: the caller gets
// a 500, which it does not retry, rather than a dropped connection, which
// it would read as "outcome unknown"; the stack goes to the log.
func (s *Server) invoke(ctx context.Context, name string, h handler, body []byte) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("rpc: handler panicked", "service", s.cfg.Service, "method", name, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: handler panicked", ErrInternal)
		}
	}()
	return h.call(ctx, body)
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) == 1
}

// fail answers a handler's error by the table, logging what the wire does
// not carry.
func (s *Server) fail(rw http.ResponseWriter, method string, err error) {
	status, we := encodeError(err, s.codes)
	if status >= 500 {
		s.log.Error("rpc: call failed", "service", s.cfg.Service, "method", method, "status", status, "err", err)
	}
	writeError(rw, status, we)
}

func (s *Server) reject(rw http.ResponseWriter, e *requestError) {
	writeError(rw, e.status, WireError{Error: e.msg, Code: e.code})
}

func writeError(rw http.ResponseWriter, status int, we WireError) {
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	rw.WriteHeader(status)
	b, _ := json.Marshal(we)
	_, _ = rw.Write(append(b, '\n'))
}

// validName reports whether s is a service or method name: lowercase
// ASCII letters, digits, '_' and '-', not empty.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
