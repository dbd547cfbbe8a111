package server

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

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// api serves the HTTP API of one DB. It routes by hand instead of through
// http.ServeMux because the mux cleans paths with redirects ("/v1/kv//k"
// would be redirected rather than refused), answers wrong methods in plain
// text, and every answer here must be JSON with X-LSN and X-Store-Node.
type api struct {
	exact    map[string]exactRoute // the routes of one path each (exactRoutes)
	db       *boltdb.DB
	log      *slog.Logger
	node     string
	maxValue int
	status   func() any
	metrics  *metrics
	repl     *replication
	srv      *Server
}

func (s *Server) handler(db *boltdb.DB, repl *replication) http.Handler {
	a := &api{db: db, log: s.log, node: s.cfg.NodeName, maxValue: s.cfg.MaxValueBytes, status: s.Status, metrics: s.metrics, repl: repl, srv: s}
	a.exact = a.exactRoutes()
	return a
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	w = rec
	if !a.authorize(w, r) {
		a.metrics.requests.WithLabelValues("unauthorized", strconv.Itoa(rec.code)).Inc()
		return
	}
	w.Header().Set(store.HeaderNode, a.node)
	a.repl.setHeaders(w.Header())
	if group := a.srv.cfg.Group; group != store.DefaultGroup {
		w.Header().Set(store.HeaderGroup, group)
	}
	if !a.sameGroup(w, r) {
		a.metrics.requests.WithLabelValues("other_group", strconv.Itoa(rec.code)).Inc()
		return
	}
	route := a.route(w, r)
	a.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
}

// sameGroup refuses a request that names another store group than this
// node's (a client or peer of that group reached this node by mistake: a
// stale address, a wrong seed) before anything is read or applied, so that
// groups never mix data, votes or LSNs. A request that names no group
// (curl) is served.
func (a *api) sameGroup(w http.ResponseWriter, r *http.Request) bool {
	g := r.Header.Get(store.HeaderGroup)
	if g == "" || store.SameGroup(g, a.srv.cfg.Group) {
		return true
	}
	a.fail(w, fmt.Errorf("this store node (%s) is in group %s, not %s: %w", a.node, store.GroupName(a.srv.cfg.Group), g, store.ErrInvalid))
	return false
}

// route dispatches r and returns the route label for the metrics.
func (a *api) route(w http.ResponseWriter, r *http.Request) string {
	p := r.URL.EscapedPath()
	if rt, ok := a.exact[p]; ok {
		if a.allow(w, r, rt.method) {
			rt.serve(w, r)
		}
		return rt.label
	}
	switch {
	case strings.HasPrefix(p, store.PathKV):
		if !a.allow(w, r, http.MethodGet, http.MethodPut, http.MethodDelete) {
			return "kv"
		}
		bucket, key, err := splitKV(p[len(store.PathKV):])
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
			a.write(w, r, store.Delete(bucket, key))
			return "kv_delete"
		}
	case strings.HasPrefix(p, store.PathScan):
		if a.allow(w, r, http.MethodGet) {
			a.scan(w, r, p[len(store.PathScan):])
		}
		return "scan"
	}
	a.reply(w, http.StatusNotFound, a.db.LSN(), store.WireError{Error: fmt.Sprintf("no route %s: the API is under /v1/kv/, /v1/scan/, /v1/txn", p)})
	return "other"
}

// exactRoute is a route of one path and one method.
type exactRoute struct {
	method, label string
	serve         http.HandlerFunc
}

// exactRoutes are the routes that are one path each, by path.
func (a *api) exactRoutes() map[string]exactRoute {
	return map[string]exactRoute{
		store.PathTxn:    {http.MethodPost, "txn", a.txn},
		pathReplicate:    {http.MethodGet, "replicate", a.replicate},
		pathSnapshot:     {http.MethodGet, "snapshot", a.snapshot},
		pathPromote:      {http.MethodPost, "promote", a.promote},
		pathHandover:     {http.MethodPost, "handover", a.handover},
		pathLease:        {http.MethodPost, "lease", a.lease},
		pathChecksum:     {http.MethodGet, "checksum", a.checksum},
		store.PathStatus: {http.MethodGet, "status", func(w http.ResponseWriter, r *http.Request) { a.reply(w, http.StatusOK, a.db.LSN(), a.status()) }},
	}
}

// checksum answers the CRC-32C of every bucket and the LSN it was taken at.
func (a *api) checksum(w http.ResponseWriter, r *http.Request) {
	sum, lsn, err := a.db.Checksum(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	a.reply(w, http.StatusOK, lsn, map[string]any{"crc32c": sum, "lsn": lsn})
}

// allow answers 405 unless r uses one of methods.
func (a *api) allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	a.reply(w, http.StatusMethodNotAllowed, a.db.LSN(), store.WireError{Error: fmt.Sprintf("method %s not allowed, use %s", r.Method, strings.Join(methods, " or "))})
	return false
}

// splitKV parses "{bucket}/{key}", both path-escaped; the key may hold
// further slashes.
func splitKV(rest string) (bucket, key string, err error) {
	b, k, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("missing key: use %s{bucket}/{key}: %w", store.PathKV, store.ErrInvalid)
	}
	if bucket, err = url.PathUnescape(b); err != nil {
		return "", "", fmt.Errorf("bucket: %v: %w", err, store.ErrInvalid)
	}
	if key, err = url.PathUnescape(k); err != nil {
		return "", "", fmt.Errorf("key: %v: %w", err, store.ErrInvalid)
	}
	if err := store.CheckBucket(bucket); err != nil {
		return "", "", err
	}
	if err := store.CheckKey(key); err != nil {
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
	w.Header().Set(store.HeaderLSN, strconv.FormatUint(lsn, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(v)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(v)
}

func (a *api) put(w http.ResponseWriter, r *http.Request, bucket, key string) {
	if r.ContentLength > int64(a.maxValue) {
		a.fail(w, fmt.Errorf("value of %d bytes over limit %d: %w", r.ContentLength, a.maxValue, store.ErrTooLarge))
		return
	}
	v, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(a.maxValue)))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("value over limit %d bytes: %w", a.maxValue, store.ErrTooLarge)
		} else {
			err = fmt.Errorf("read body: %v: %w", err, store.ErrInvalid)
		}
		a.fail(w, err)
		return
	}
	a.write(w, r, store.Put(bucket, key, v))
}

func (a *api) txn(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > store.MaxRequestBytes {
		a.fail(w, fmt.Errorf("body of %d bytes over MaxRequestBytes %d: %w", r.ContentLength, store.MaxRequestBytes, store.ErrTooLarge))
		return
	}
	ops, err := store.DecodeTxn(http.MaxBytesReader(w, r.Body, store.MaxRequestBytes))
	if err != nil {
		a.fail(w, err)
		return
	}
	a.write(w, r, ops...)
}

// write commits ops and answers {"lsn":N}.
func (a *api) write(w http.ResponseWriter, r *http.Request, ops ...store.Op) {
	if s := r.Header.Get(store.HeaderEpoch); s != "" {
		// The client has seen a primary of a newer epoch: this node is
		// deposed, whatever it believes.
		if e, err := strconv.ParseUint(s, 10, 64); err == nil && e > a.db.Epoch() {
			a.fail(w, fmt.Errorf("node %s is at epoch %d, the client has seen %d: %w", a.node, a.db.Epoch(), e, store.ErrNotPrimary))
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
	a.reply(w, http.StatusOK, lsn, store.WireLSN{LSN: lsn})
}

func (a *api) scan(w http.ResponseWriter, r *http.Request, rest string) {
	bucket, err := url.PathUnescape(rest)
	if err != nil {
		a.fail(w, fmt.Errorf("bucket: %v: %w", err, store.ErrInvalid))
		return
	}
	q := r.URL.Query()
	opts := store.ScanOptions{Prefix: q.Get("prefix"), Start: q.Get("start"), End: q.Get("end")}
	if s := q.Get("limit"); s != "" {
		if opts.Limit, err = strconv.Atoi(s); err != nil {
			a.fail(w, fmt.Errorf("limit %q is not a number: %w", s, store.ErrInvalid))
			return
		}
	}
	if s := q.Get("reverse"); s != "" {
		if opts.Reverse, err = strconv.ParseBool(s); err != nil {
			a.fail(w, fmt.Errorf("reverse %q is not a boolean: %w", s, store.ErrInvalid))
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
	out := store.WireScan{LSN: lsn, Pairs: make([]store.WirePair, len(pairs))}
	for i, p := range pairs {
		out.Pairs[i].Key = p.Key
		out.Pairs[i].Value, out.Pairs[i].ValueB64 = store.EncodeValue(p.Value)
	}
	a.reply(w, http.StatusOK, lsn, out)
}

func (a *api) fail(w http.ResponseWriter, err error) { a.failAt(w, a.db.LSN(), err) }

// failAt answers err as {"error":...} with the status of its sentinel.
func (a *api) failAt(w http.ResponseWriter, lsn uint64, err error) {
	code := store.StatusOf(err)
	switch {
	case errors.Is(err, context.Canceled):
		// The request's context ended: its client went away (an app whose
		// own caller gave up, or whose read moved on from this node to
		// the primary). Nothing here failed, and the answer goes nowhere.
		a.log.Debug("store request abandoned by its client", "err", err)
	case code >= 500:
		// 4xx are the caller's business; a 5xx is ours to look at.
		a.log.Warn("store request failed", "code", code, "err", err)
	}
	a.reply(w, code, lsn, store.WireError{Error: err.Error()})
}

// reply writes v as JSON with the X-LSN header.
func (a *api) reply(w http.ResponseWriter, code int, lsn uint64, v any) {
	w.Header().Set(store.HeaderLSN, strconv.FormatUint(lsn, 10))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// confirmRead makes a strong read linearizable: what it saw, up to lsn,
// may include a commit the replicas have not made durable yet (its writer is
// still waiting for --store-sync), which a failover right now would lose. So the
// read is answered only once lsn is as durable as an acknowledged write, and
// the lease still held.
func (a *api) confirmRead(r *http.Request, lsn uint64) error {
	if r.Header.Get(store.HeaderConsistency) != store.Strong.String() {
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
	if r.Header.Get(store.HeaderConsistency) == store.Strong.String() {
		if err := a.repl.gate(); err != nil {
			return fmt.Errorf("strong read: %w", err)
		}
		return nil
	}
	s := r.Header.Get(store.HeaderMinLSN)
	if s == "" {
		return nil
	}
	min, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%s %q: %w", store.HeaderMinLSN, s, store.ErrInvalid)
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
			return fmt.Errorf("node %s has applied LSN %d, the read needs %d: %w", a.node, a.db.LSN(), min, store.ErrBehind)
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
