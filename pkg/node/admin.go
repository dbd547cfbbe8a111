package node

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminServer serves /healthz, /readyz, /status, /metrics and /debug/pprof/
// on the admin port of every node.
type adminServer struct {
	srv *http.Server
	ln  net.Listener
}

func (n *Node) openAdmin() (*adminServer, error) {
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
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	ln, err := net.Listen("tcp", n.listenAddr(n.cfg.Ports.Admin))
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		// No WriteTimeout: /debug/pprof/profile streams for its duration.
	}
	go srv.Serve(ln)
	return &adminServer{srv: srv, ln: ln}, nil
}

func (a *adminServer) Addr() string { return a.ln.Addr().String() }

func (a *adminServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
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
	Name   string            `json:"name"`
	Roles  []string          `json:"roles"`
	Status string            `json:"status"`
	State  string            `json:"state"`
	Addrs  map[string]string `json:"addrs,omitempty"`
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
			st.Members = append(st.Members, MemberStatus{
				Name: m.Name, Roles: m.Roles, Status: string(m.Status), State: m.State, Addrs: m.Addrs,
			})
		}
		st.Sections["cluster"] = n.cluster.Status()
	}
	if n.nats != nil {
		st.Sections["nats"] = n.nats.Status()
	}
	for _, r := range n.roles {
		st.Sections[r.name] = r.r.Status()
	}
	return st
}
