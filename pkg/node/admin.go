package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/scalestack/scalestack/pkg/cluster"
	"golang.org/x/net/netutil"
)

// AdminConfig configures the admin endpoints of a node: /healthz and
// /readyz, open to all (load balancers and the launcher poll them), and
// /status, /metrics and /debug/pprof/, which with a cluster key want
// "Authorization: Bearer <AdminToken(key)>".
type AdminConfig struct {
	// Addr is the address the admin endpoints listen on, IP:port
	// (--admin-addr). Default: the node's --addr with --admin-port, so that
	// load balancers on other machines can reach /readyz (membership
	// announces it). An address off loopback needs a cluster key; a
	// loopback address on a node that is not on loopback is not announced,
	// and load balancers then health-check the app port instead.
	Addr string
	// ReadHeaderTimeout bounds reading a request's head. Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, so that
	// a client trickling a body cannot hold a connection. Default 10s: no
	// admin request has a body worth waiting for.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response from the end of the request's
	// head. It must exceed the longest /debug/pprof/profile or trace asked
	// for (their seconds parameter, 30 by default; pprof refuses longer
	// ones). Default 2m.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle this long. Default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's head. Default 16 KiB.
	MaxHeaderBytes int
	// MaxConns bounds the connections served at once; past it the
	// listener accepts no more until one closes, so that a client opening
	// connections cannot exhaust the node's file descriptors through its
	// admin port. Default 256: operators, Prometheus and load balancers'
	// health checks need a few each.
	MaxConns int
}

// DefaultAdminConfig returns the defaults documented on AdminConfig.
func DefaultAdminConfig() AdminConfig {
	return AdminConfig{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		MaxConns:          256,
	}
}

func (a *AdminConfig) validate() error {
	if a.ReadHeaderTimeout <= 0 || a.ReadTimeout <= 0 || a.WriteTimeout <= 0 || a.IdleTimeout <= 0 {
		return configErr("Admin: ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout must be positive (got %v, %v, %v, %v)",
			a.ReadHeaderTimeout, a.ReadTimeout, a.WriteTimeout, a.IdleTimeout)
	}
	if a.MaxHeaderBytes < 1024 {
		return configErr("Admin: MaxHeaderBytes %d is below 1024", a.MaxHeaderBytes)
	}
	if a.MaxConns < 1 {
		return configErr("Admin: MaxConns %d must be at least 1", a.MaxConns)
	}
	return nil
}

// adminServer serves /healthz, /readyz, /status, /metrics and /debug/pprof/
// on the admin port of every node.
type adminServer struct {
	srv *http.Server
	ln  net.Listener
}

func (n *Node) openAdmin() (*adminServer, error) {
	// The cluster key was parsed when the node joined the cluster.
	token, err := AdminToken(n.cfg.ClusterKey)
	if err != nil {
		return nil, err
	}
	// Behind the token: what the node knows (members, addresses, figures)
	// and what profiling can do to it (CPU for 30s, a trace).
	private := http.NewServeMux()
	private.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
	private.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	private.HandleFunc("/debug/pprof/", pprof.Index)
	private.HandleFunc("/debug/pprof/cmdline", n.serveCmdline)
	private.HandleFunc("/debug/pprof/profile", pprof.Profile)
	private.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	private.HandleFunc("/debug/pprof/trace", pprof.Trace)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("/", requireToken(token, private))

	ln, err := net.Listen("tcp", n.cfg.Admin.Addr)
	if err != nil {
		return nil, err
	}
	ac := n.cfg.Admin
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: ac.ReadHeaderTimeout,
		ReadTimeout:       ac.ReadTimeout,
		WriteTimeout:      ac.WriteTimeout,
		IdleTimeout:       ac.IdleTimeout,
		MaxHeaderBytes:    ac.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(n.log.With("role", "admin").Handler(), slog.LevelDebug),
	}
	go srv.Serve(netutil.LimitListener(ln, ac.MaxConns))
	return &adminServer{srv: srv, ln: ln}, nil
}

// requireToken passes requests that carry "Authorization: Bearer token" to
// h and answers the others 401. An empty token (no cluster key, so the
// admin port is on loopback) lets every request through.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="scalestack admin"`)
			http.Error(w, "401 unauthorized: this endpoint wants Authorization: Bearer <admin token>, derived from the cluster key "+
				"(the status command presents it when given the key: --cluster-key-file FILE or NODE_CLUSTER_KEY)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveCmdline is pprof's cmdline (the arguments, NUL-separated) with the
// values of secret flags replaced: a key given on the command line must not
// be one request away.
func (n *Node) serveCmdline(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, strings.Join(RedactArgs(n.cfg.CommandLine), "\x00"))
}

func (a *adminServer) Addr() string { return a.ln.Addr().String() }

func (a *adminServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}

// advertisedAdmin is the admin address membership announces, where load
// balancers health-check /readyz: the bound address; the node's own address
// with the admin port when the admin endpoints listen on every interface;
// none when they listen on loopback while the node does not (a peer would
// reach its own loopback).
func (n *Node) advertisedAdmin() string {
	if n.admin == nil {
		return ""
	}
	bound := n.admin.Addr()
	host, port, err := net.SplitHostPort(bound)
	ip := net.ParseIP(host)
	switch {
	case err != nil || ip == nil:
		return bound
	case ip.IsUnspecified():
		return net.JoinHostPort(n.cfg.Addr, port)
	case ip.IsLoopback() && !net.ParseIP(n.cfg.Addr).IsLoopback():
		return ""
	}
	return bound
}

// Status is the JSON document of /status.
type Status struct {
	Name    string            `json:"name"`
	Roles   []string          `json:"roles"`
	Addr    string            `json:"addr"`
	Version string            `json:"version"`
	Ready   bool              `json:"ready"`
	Started time.Time         `json:"started"`
	Uptime  string            `json:"uptime"`
	Addrs   map[string]string `json:"addrs"`
	Members []MemberStatus    `json:"members"`
	// Sections holds each role's live figures, keyed by role ("store",
	// "app", "lb", "cache", "nats").
	Sections map[string]any `json:"sections"`
}

// MemberStatus is one member of the cluster as this node sees it.
type MemberStatus struct {
	Name   string   `json:"name"`
	Roles  []string `json:"roles"`
	Status string   `json:"status"`
	// State is what an alive member announces (up, draining, starting);
	// empty for a dead or left member, which announces nothing: LastState
	// is then the last state it announced, stale.
	State     string            `json:"state"`
	LastState string            `json:"last_state,omitempty"`
	Addrs     map[string]string `json:"addrs,omitempty"`
}

// memberStatus is m as /status shows it.
func memberStatus(m cluster.Member) MemberStatus {
	ms := MemberStatus{Name: m.Name, Roles: m.Roles, Status: string(m.Status), State: m.State, Addrs: m.Addrs}
	if m.Status != cluster.StatusAlive {
		ms.State, ms.LastState = "", m.State
	}
	return ms
}

// Status returns the node's live status.
func (n *Node) Status() Status {
	st := Status{
		Name:     n.cfg.Name,
		Roles:    n.cfg.RoleNames,
		Addr:     n.cfg.Addr,
		Version:  Version(),
		Ready:    n.Ready(),
		Started:  n.started,
		Uptime:   time.Since(n.started).Round(time.Second).String(),
		Sections: map[string]any{},
	}
	if n.cluster != nil {
		st.Addrs = n.addrs()
		for _, m := range n.cluster.Members() {
			st.Members = append(st.Members, memberStatus(m))
		}
		st.Sections["cluster"] = n.cluster.Status()
	}
	if n.nats != nil {
		st.Sections["nats"] = n.nats.Status()
	}
	for _, r := range n.roles {
		if s := r.r.Status(); s != nil {
			st.Sections[r.name] = s
		}
	}
	return st
}
