package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
)

// The store port is one door with one credential: with Config.Token set,
// every request (API, replication stream, snapshot, lease messages,
// promote, hand-over, checksum, status) must carry
//
//	Authorization: Bearer <token>
//
// and is otherwise answered 401 with WWW-Authenticate: Bearer and a JSON
// error, before anything else is looked at. The node derives the token from
// the cluster key, so every store node, app and worker of a cluster shares
// it. A store node presents it on its own requests to the other store nodes.

// authRealm names the store port in WWW-Authenticate.
const authRealm = `Bearer realm="scalestack store"`

// bearer returns the value of an Authorization header carrying token.
func bearer(token string) string { return "Bearer " + token }

// checkToken reports whether r carries token; an empty token lets anything
// through. The comparison takes the same time whatever the guess.
func checkToken(r *http.Request, token string) (ok, given bool) {
	if token == "" {
		return true, false
	}
	got, given := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !given {
		return false, r.Header.Get("Authorization") != ""
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1, true
}

// authorize answers 401 unless r carries the server's token, and says so.
// The answer carries no replication headers: who the primary is and at
// which epoch is not for strangers.
func (a *api) authorize(w http.ResponseWriter, r *http.Request) bool {
	ok, given := checkToken(r, a.srv.cfg.Token)
	if ok {
		return true
	}
	msg := "the store port needs Authorization: Bearer <token>, the store credential derived from the cluster key (`./node secret store` prints it)"
	if given {
		msg = "the store port refused this token: it is not the store credential of this cluster's key (every node must use the same --cluster-key)"
	}
	a.srv.refused.note(a.log, r, given)
	w.Header().Set("WWW-Authenticate", authRealm)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(store.WireError{Error: msg})
	return false
}

// refusals logs refused requests at warn, at most once per refusalLogEvery
// with the count since the last line: a peer with the wrong key retries
// many times a second, and its every try is not news.
type refusals struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

const refusalLogEvery = 10 * time.Second

func (f *refusals) note(log *slog.Logger, r *http.Request, given bool) {
	f.mu.Lock()
	now := time.Now()
	if now.Sub(f.last) < refusalLogEvery {
		f.skipped++
		f.mu.Unlock()
		return
	}
	skipped := f.skipped
	f.last, f.skipped = now, 0
	f.mu.Unlock()
	why := "no credential"
	if given {
		why = "wrong credential"
	}
	log.Warn("store refused a request", "why", why, "remote", r.RemoteAddr, "path", r.URL.Path, "refused_since_last_line", skipped)
}

// scheme is the URL scheme of requests to store nodes configured like this
// one: a group is all TLS or all plain.
func (s *Server) scheme() string {
	if s.cfg.PeerTLS != nil {
		return "https://"
	}
	return "http://"
}

// peerURL is the URL of path on the store node at addr.
func (s *Server) peerURL(addr, path string) string { return s.scheme() + addr + path }

// authorizePeer adds this node's credential to a request to another store
// node.
func (s *Server) authorizePeer(req *http.Request) {
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", bearer(s.cfg.Token))
	}
	store.SetGroupHeader(req.Header, s.cfg.Group)
}

// peerTransport returns a transport for requests to other store nodes,
// dialling within dial and speaking TLS with PeerTLS when it is set.
func (s *Server) peerTransport(dial time.Duration) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dial}).DialContext,
		TLSClientConfig:     cloneTLS(s.cfg.PeerTLS),
		TLSHandshakeTimeout: 2 * dial,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
}

func cloneTLS(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	return c.Clone()
}

// dialPeer opens a connection to the store node at addr for the
// replication stream, with TLS when PeerTLS is set (the peer's certificate
// must name addr's host).
func (r *replication) dialPeer(ctx context.Context, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if r.s.cfg.PeerTLS == nil {
		return d.DialContext(ctx, "tcp", addr)
	}
	td := &tls.Dialer{NetDialer: d, Config: r.s.cfg.PeerTLS.Clone()}
	return td.DialContext(ctx, "tcp", addr)
}

// peerAnswer returns nil for a 200 from another store node, else an error
// with the node's message, wrapping the sentinel of its status
// (ErrUnauthorized for a 401: the nodes' keys differ).
func peerAnswer(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	var we store.WireError
	if json.Unmarshal(body, &we) == nil && we.Error != "" {
		msg = we.Error
	}
	return fmt.Errorf("%s: %s: %w", resp.Status, msg, store.ErrorOf(resp.StatusCode))
}
