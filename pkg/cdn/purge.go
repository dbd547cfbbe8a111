package cdn

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/cdn/purge"
)

// PurgeRequest is the body of POST /_edge/purge and the payload of a message
// on PurgeSubject: URLs (paths with their query, or absolute URLs whose
// host is ignored) and surrogate keys whose stored responses are removed,
// or All, which removes every stored response. Its wire format is package
// purge's, which publishers import instead of the edge.
type PurgeRequest = purge.Message

// PurgeResult says what a purge removed.
type PurgeResult struct {
	URLs    int `json:"urls"`
	Keys    int `json:"keys"`
	Objects int `json:"objects"` // stored responses removed
}

// Purge removes every stored variant of each URL and every stored response
// that listed one of the keys in its Surrogate-Key header.
func (e *Edge) Purge(req PurgeRequest) PurgeResult {
	now := time.Now()
	res := PurgeResult{URLs: len(req.URLs), Keys: len(req.Keys)}
	if req.All {
		res.Objects = e.store.purgeAll()
	}
	for _, u := range req.URLs {
		res.Objects += e.store.purgeURL(purgeURI(u), now)
	}
	for _, k := range req.Keys {
		res.Objects += e.store.purgeTag(k, now)
	}
	e.purgeRequests.Add(1)
	e.purgedObjects.Add(uint64(res.Objects))
	return res
}

// purgeURI turns a purge target into the cache's primary key.
func purgeURI(s string) string {
	if strings.HasPrefix(s, "/") {
		return s
	}
	if u, err := url.Parse(s); err == nil {
		return u.RequestURI()
	}
	return s
}

// purgeMessage handles one message on PurgeSubject.
func (e *Edge) purgeMessage(data []byte) {
	req, err := purge.Decode(data)
	if err != nil {
		e.log.Warn("edge purge message ignored", "err", err)
		return
	}
	res := e.Purge(req)
	e.log.Debug("edge purged", "via", "nats", "urls", res.URLs, "keys", res.Keys, "objects", res.Objects)
}

// purgesMissed empties the cache when purge messages may have been lost
// (Purges' missed callback): any page stored may be one a lost purge named.
func (e *Edge) purgesMissed() {
	res := e.Purge(PurgeRequest{All: true})
	e.log.Info("edge purged everything: purges may have been missed", "objects", res.Objects)
}

// authorized checks the bearer token of an HTTP purge and answers the
// client when it fails.
func (e *Edge) authorized(w http.ResponseWriter, r *http.Request) bool {
	if e.cfg.PurgeToken == "" {
		http.Error(w, "edge: purging over HTTP is disabled (no --edge-purge-token)", http.StatusForbidden)
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(e.cfg.PurgeToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="edge purge"`)
		http.Error(w, "edge: purge needs Authorization: Bearer <token>", http.StatusUnauthorized)
		return false
	}
	return true
}

// servePurge answers POST /_edge/purge with a PurgeRequest body.
func (e *Edge) servePurge(w http.ResponseWriter, r *http.Request) {
	if !e.authorized(w, r) {
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.cfg.MaxPurgeBytes))
	if err != nil {
		http.Error(w, fmt.Sprintf("edge: read purge request: %v", err), http.StatusRequestEntityTooLarge)
		return
	}
	var req PurgeRequest
	if err := json.Unmarshal(data, &req); err != nil {
		http.Error(w, fmt.Sprintf(`edge: purge body must be {"urls":[...],"keys":[...]}: %v`, err), http.StatusBadRequest)
		return
	}
	e.writePurgeResult(w, e.Purge(req))
}

// servePurgeMethod answers "PURGE /path": the URL itself is purged.
func (e *Edge) servePurgeMethod(w http.ResponseWriter, r *http.Request) {
	if !e.authorized(w, r) {
		return
	}
	e.writePurgeResult(w, e.Purge(PurgeRequest{URLs: []string{requestURI(r)}}))
}

func (e *Edge) writePurgeResult(w http.ResponseWriter, res PurgeResult) {
	e.log.Debug("edge purged", "via", "http", "urls", res.URLs, "keys", res.Keys, "objects", res.Objects)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(res)
}
