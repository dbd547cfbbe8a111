package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Routes of the HTTP API (see the package doc for the wire format).
const (
	pathKV     = "/v1/kv/"   // + {bucket}/{key}
	pathScan   = "/v1/scan/" // + {bucket}
	pathTxn    = "/v1/txn"
	pathStatus = "/v1/status"
)

// api serves the HTTP API of one DB. It routes by hand instead of through
// http.ServeMux because the mux cleans paths with redirects ("/v1/kv//k"
// would be redirected rather than refused), answers wrong methods in plain
// text, and every answer here must be JSON with X-LSN and X-Store-Node.
type api struct {
	db       *DB
	log      *slog.Logger
	node     string
	maxValue int
	status   func() any
	metrics  *metrics
	repl     *replication
	srv      *Server
}

func (s *Server) handler(db *DB, repl *replication) http.Handler {
	return &api{db: db, log: s.log, node: s.cfg.NodeName, maxValue: s.cfg.MaxValueBytes, status: s.Status, metrics: s.metrics, repl: repl, srv: s}
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	w = rec
	if !a.authorize(w, r) {
		a.metrics.requests.WithLabelValues("unauthorized", strconv.Itoa(rec.code)).Inc()
		return
	}
	w.Header().Set(HeaderNode, a.node)
	a.repl.setHeaders(w.Header())
	route := a.route(w, r)
	a.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
}

// route dispatches r and returns the route label for the metrics.
func (a *api) route(w http.ResponseWriter, r *http.Request) string {
	p := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(p, pathKV):
		if !a.allow(w, r, http.MethodGet, http.MethodPut, http.MethodDelete) {
			return "kv"
		}
		bucket, key, err := splitKV(p[len(pathKV):])
		if err != nil {
			a.fail(w, err)
			return "kv"
		}
		switch r.Method {
		case http.MethodGet:
			a.get(w, r, bucket, key)
			return "kv_get"
		case http.MethodPut:
			a.put(w, r, bucket, key)
			return "kv_put"
		default:
			a.write(w, r, Delete(bucket, key))
			return "kv_delete"
		}
	case strings.HasPrefix(p, pathScan):
		if a.allow(w, r, http.MethodGet) {
			a.scan(w, r, p[len(pathScan):])
		}
		return "scan"
	case p == pathTxn:
		if a.allow(w, r, http.MethodPost) {
			a.txn(w, r)
		}
		return "txn"
	case p == pathReplicate:
		if a.allow(w, r, http.MethodGet) {
			a.replicate(w, r)
		}
		return "replicate"
	case p == pathSnapshot:
		if a.allow(w, r, http.MethodGet) {
			a.snapshot(w, r)
		}
		return "snapshot"
	case p == pathPromote:
		if a.allow(w, r, http.MethodPost) {
			a.promote(w, r)
		}
		return "promote"
	case p == pathHandover:
		if a.allow(w, r, http.MethodPost) {
			a.handover(w, r)
		}
		return "handover"
	case p == pathLease:
		if a.allow(w, r, http.MethodPost) {
			a.lease(w, r)
		}
		return "lease"
	case p == pathChecksum:
		if a.allow(w, r, http.MethodGet) {
			sum, lsn, err := a.db.Checksum(r.Context())
			if err != nil {
				a.fail(w, err)
				return "checksum"
			}
			a.reply(w, http.StatusOK, lsn, map[string]any{"crc32c": sum, "lsn": lsn})
		}
		return "checksum"
	case p == pathStatus:
		if a.allow(w, r, http.MethodGet) {
			a.reply(w, http.StatusOK, a.db.LSN(), a.status())
		}
		return "status"
	}
	a.reply(w, http.StatusNotFound, a.db.LSN(), wireError{Error: fmt.Sprintf("no route %s: the API is under /v1/kv/, /v1/scan/, /v1/txn", p)})
	return "other"
}

// allow answers 405 unless r uses one of methods.
func (a *api) allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	a.reply(w, http.StatusMethodNotAllowed, a.db.LSN(), wireError{Error: fmt.Sprintf("method %s not allowed, use %s", r.Method, strings.Join(methods, " or "))})
	return false
}

// splitKV parses "{bucket}/{key}", both path-escaped; the key may hold
// further slashes.
func splitKV(rest string) (bucket, key string, err error) {
	b, k, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("missing key: use %s{bucket}/{key}: %w", pathKV, ErrInvalid)
	}
	if bucket, err = url.PathUnescape(b); err != nil {
		return "", "", fmt.Errorf("bucket: %v: %w", err, ErrInvalid)
	}
	if key, err = url.PathUnescape(k); err != nil {
		return "", "", fmt.Errorf("key: %v: %w", err, ErrInvalid)
	}
	if err := checkBucket(bucket); err != nil {
		return "", "", err
	}
	if err := checkKey(key); err != nil {
		return "", "", err
	}
	return bucket, key, nil
}

func (a *api) get(w http.ResponseWriter, r *http.Request, bucket, key string) {
	if err := a.readable(r); err != nil {
		a.fail(w, err)
		return
	}
	v, lsn, err := a.db.GetLSN(r.Context(), bucket, key)
	if cerr := a.confirmRead(r, lsn); cerr != nil {
		a.fail(w, cerr)
		return
	}
	if err != nil {
		a.failAt(w, lsn, err)
		return
	}
	w.Header().Set(HeaderLSN, strconv.FormatUint(lsn, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(v)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(v)
}

func (a *api) put(w http.ResponseWriter, r *http.Request, bucket, key string) {
	if r.ContentLength > int64(a.maxValue) {
		a.fail(w, fmt.Errorf("value of %d bytes over limit %d: %w", r.ContentLength, a.maxValue, ErrTooLarge))
		return
	}
	v, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(a.maxValue)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("value over limit %d bytes: %w", a.maxValue, ErrTooLarge)
		} else {
			err = fmt.Errorf("read body: %v: %w", err, ErrInvalid)
		}
		a.fail(w, err)
		return
	}
	a.write(w, r, Put(bucket, key, v))
}

func (a *api) txn(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > MaxRequestBytes {
		a.fail(w, fmt.Errorf("body of %d bytes over MaxRequestBytes %d: %w", r.ContentLength, MaxRequestBytes, ErrTooLarge))
		return
	}
	ops, err := decodeTxn(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		a.fail(w, err)
		return
	}
	a.write(w, r, ops...)
}

// write commits ops and answers {"lsn":N}.
func (a *api) write(w http.ResponseWriter, r *http.Request, ops ...Op) {
	if s := r.Header.Get(HeaderEpoch); s != "" {
		// The client has seen a primary of a newer epoch: this node is
		// deposed, whatever it believes.
		if e, err := strconv.ParseUint(s, 10, 64); err == nil && e > a.db.Epoch() {
			a.fail(w, fmt.Errorf("node %s is at epoch %d, the client has seen %d: %w", a.node, a.db.Epoch(), e, ErrNotPrimary))
			return
		}
	}
	lsn, err := a.db.Txn(r.Context(), ops...)
	if err == nil {
		err = a.repl.confirm(r.Context(), lsn)
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	a.reply(w, http.StatusOK, lsn, wireLSN{LSN: lsn})
}

func (a *api) scan(w http.ResponseWriter, r *http.Request, rest string) {
	bucket, err := url.PathUnescape(rest)
	if err != nil {
		a.fail(w, fmt.Errorf("bucket: %v: %w", err, ErrInvalid))
		return
	}
	q := r.URL.Query()
	opts := ScanOptions{Prefix: q.Get("prefix"), Start: q.Get("start"), End: q.Get("end")}
	if s := q.Get("limit"); s != "" {
		if opts.Limit, err = strconv.Atoi(s); err != nil {
			a.fail(w, fmt.Errorf("limit %q is not a number: %w", s, ErrInvalid))
			return
		}
	}
	if s := q.Get("reverse"); s != "" {
		if opts.Reverse, err = strconv.ParseBool(s); err != nil {
			a.fail(w, fmt.Errorf("reverse %q is not a boolean: %w", s, ErrInvalid))
			return
		}
	}
	if err := a.readable(r); err != nil {
		a.fail(w, err)
		return
	}
	pairs, lsn, err := a.db.ScanLSN(r.Context(), bucket, opts)
	if cerr := a.confirmRead(r, lsn); cerr != nil {
		a.fail(w, cerr)
		return
	}
	if err != nil {
		a.failAt(w, lsn, err)
		return
	}
	out := wireScan{LSN: lsn, Pairs: make([]wirePair, len(pairs))}
	for i, p := range pairs {
		out.Pairs[i].Key = p.Key
		out.Pairs[i].Value, out.Pairs[i].ValueB64 = encodeValue(p.Value)
	}
	a.reply(w, http.StatusOK, lsn, out)
}

func (a *api) fail(w http.ResponseWriter, err error) { a.failAt(w, a.db.LSN(), err) }

// failAt answers err as {"error":...} with the status of its sentinel.
func (a *api) failAt(w http.ResponseWriter, lsn uint64, err error) {
	code := statusOf(err)
	if code >= 500 {
		// 4xx are the caller's business; a 5xx is ours to look at.
		a.log.Warn("store request failed", "code", code, "err", err)
	}
	a.reply(w, code, lsn, wireError{Error: err.Error()})
}

// reply writes v as JSON with the X-LSN header.
func (a *api) reply(w http.ResponseWriter, code int, lsn uint64, v any) {
	w.Header().Set(HeaderLSN, strconv.FormatUint(lsn, 10))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf maps the sentinel errors to HTTP statuses; Client.errorOf is its
// inverse.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConditionFailed):
		return http.StatusConflict
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrCompacted):
		return http.StatusGone
	case errors.Is(err, ErrNotPrimary):
		// Nothing was applied: the client may send it to the primary.
		return http.StatusMisdirectedRequest
	case errors.Is(err, ErrBehind):
		return http.StatusTooEarly
	case errors.Is(err, ErrStaleEpoch):
		return http.StatusConflict
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnavailable), errors.Is(err, ErrSyncTimeout),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// confirmRead makes a strong read linearizable: what it saw, up to lsn,
// may include a commit the replicas have not made durable yet (its writer is
// still waiting for --store-sync), which a failover right now would lose. So the
// read is answered only once lsn is as durable as an acknowledged write, and
// the lease still held.
func (a *api) confirmRead(r *http.Request, lsn uint64) error {
	if r.Header.Get(HeaderConsistency) != Strong.String() {
		return nil
	}
	if err := a.repl.confirm(r.Context(), lsn); err != nil {
		return fmt.Errorf("strong read at LSN %d: %w", lsn, err)
	}
	return nil
}

// readable checks a read's consistency headers: a strong read needs the
// primary with a good lease; a session read needs the LSN applied, waiting
// up to SessionWait for it.
func (a *api) readable(r *http.Request) error {
	if r.Header.Get(HeaderConsistency) == Strong.String() {
		if err := a.repl.gate(); err != nil {
			return fmt.Errorf("strong read: %w", err)
		}
		return nil
	}
	s := r.Header.Get(HeaderMinLSN)
	if s == "" {
		return nil
	}
	min, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q: %w", HeaderMinLSN, s, ErrInvalid)
	}
	if a.db.LSN() >= min {
		return nil
	}
	t := time.NewTimer(a.srv.cfg.SessionWait)
	defer t.Stop()
	for {
		ch := a.db.Changed()
		if a.db.LSN() >= min {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return fmt.Errorf("node %s has applied LSN %d, the read needs %d: %w", a.node, a.db.LSN(), min, ErrBehind)
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
}

// statusRecorder remembers the status code for the metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
