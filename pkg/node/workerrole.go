package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/worker"
)

// JobsQueue is the value of the app's --jobs that publishes side effects to
// the job queue for the worker role (stage 8) instead of running them in
// the request.
const JobsQueue = app.JobsQueue

// openWorker builds and opens the worker role: it reads and writes the
// store through the node's store client, like the app, and consumes jobs
// from the NATS servers membership names. It shares the app's outbox
// folder setting (--app-outbox), so that one node running both writes one
// folder.
func (n *Node) openWorker(wc worker.Config) error {
	if n.client == nil {
		n.client = n.newStoreClient()
	}
	wc.NodeName = n.cfg.Name
	wc.DataDir = n.cfg.DataDir
	if wc.Outbox == "" {
		wc.Outbox = n.cfg.RoleConfig.App.Outbox
	}
	if wc.Outbox == "" {
		wc.Outbox = filepath.Join(n.cfg.DataDir, "outbox")
	}
	wc.Store = n.client
	// The worker's writes (thumbnails, comment counts) change public pages:
	// they purge them at the edges like the app's writes do.
	purger, err := n.openPurger("worker-purges", "worker")
	if err != nil {
		return err
	}
	svc := app.NewServices(n.client, 4)
	wrapped := false
	// With the app's cache tier on (--cache=on on the worker's node too),
	// the worker's writes must invalidate it like the app's do; otherwise a
	// new thumbnail or comment count stays hidden behind a cached copy.
	if ac := n.cfg.RoleConfig.App; ac.Cache == "on" {
		tc := ac.CacheTier
		tc.Nodes, tc.Logger, tc.Metrics = n.cacheNodes, n.log.With("role", "worker"), nil
		if tc.Password == "" {
			tc.Password = n.cachePassword()
		}
		tc.TLS = n.clientTLS()
		// The same key as the app's, so each reads what the other fills.
		if len(ac.CacheMACKey) > 0 {
			tc.MACKey = ac.CacheMACKey
		}
		if len(tc.MACKey) == 0 {
			tc.MACKey = n.cacheMACKey()
		}
		tier, err := cachetier.New(tc)
		if err != nil {
			return fmt.Errorf("worker: cache tier: %w", err)
		}
		if err := n.openRole("worker-cache", tierRole{tier}); err != nil {
			return err
		}
		svc = app.WithCache(svc, tier, app.CacheOptions{PageSize: ac.PageSize, Pages: ac.CachePages})
		wrapped = true
	}
	if purger != nil {
		svc = app.WithPurges(svc, purger)
		wrapped = true
	}
	if wrapped {
		wc.Services = &svc
	}
	wc.NATS, wc.NATSPassword, wc.NATSTLS = n.natsClientURLs, n.secrets.NATS, n.clientTLS()
	wc.NATSServers = n.natsServerCount
	wc.Logger = n.log.With("role", "worker")
	wc.Metrics = n.reg
	w, err := worker.New(wc)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return n.openRole("worker", w)
}

// appJobs sets ac.JobQueue when the app runs with --jobs=queue: a publisher
// to the job queue, opened as a role of its own ("jobs") before the app so
// that it closes after the app has stopped publishing.
//
// It also sets ac.Purger (--app-purge=on): the app's other NATS publisher.
func (n *Node) appJobs(ac *app.Config) error {
	purger, err := n.openPurger("purges", "app")
	if err != nil {
		return err
	}
	if purger != nil {
		ac.Purger = purger
	}
	if ac.Jobs != JobsQueue {
		return nil
	}
	p, err := worker.NewPublisher(worker.PublisherConfig{
		Name:         n.cfg.Name + "-jobs",
		NATS:         n.natsClientURLs,
		NATSPassword: n.secrets.NATS,
		NATSTLS:      n.clientTLS(),
		NATSServers:  n.natsServerCount,
		Jobs:         queue.DefaultJobsConfig(),
		Logger:       n.log.With("role", "app"),
	})
	if err != nil {
		return fmt.Errorf("app: jobs: %w", err)
	}
	if err := n.openRole("jobs", p); err != nil {
		return err
	}
	ac.JobQueue = p
	return nil
}

// openPurger opens a publisher of edge purges as a role of its own (so that
// it closes after the role that purges through it), or returns nil with
// --app-purge=off. It connects once membership names a NATS server.
func (n *Node) openPurger(name, logRole string) (*worker.Purger, error) {
	if n.cfg.RoleConfig.App.Purge == "off" {
		return nil, nil
	}
	pc := worker.DefaultPurgerConfig()
	pc.Name = n.cfg.Name + "-" + name
	pc.NATS, pc.NATSPassword, pc.NATSTLS = n.natsClientURLs, n.secrets.NATS, n.clientTLS()
	pc.Logger = n.log.With("role", logRole)
	if n.reg != nil {
		pc.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"role": logRole}, n.reg)
	}
	p, err := worker.NewPurger(pc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", logRole, err)
	}
	if err := n.openRole(name, p); err != nil {
		return nil, err
	}
	return p, nil
}

// validateWorker checks the worker's configuration before the node starts.
func (rc *RoleConfigs) validateWorker(c *Config, wc worker.Config) error {
	wc.NodeName, wc.DataDir, wc.Store = c.Name, c.DataDir, placeholderStore{}
	wc.NATS = func() []string { return nil }
	if err := wc.Validate(); err != nil {
		return c.roleErr(RoleWorker, err)
	}
	return nil
}

// errNoQueue is returned by a publisher placeholder during validation.
var errNoQueue = errors.New("node: job queue placeholder")

// placeholderJobs stands in for the job publisher while a configuration
// with --jobs=queue is validated; it is never called.
type placeholderJobs struct{}

func (placeholderJobs) Enqueue(context.Context, app.Job) error { return errNoQueue }

// natsServerCount is how many NATS servers the cluster has: alive members
// that announce a NATS client port (this node included).
func (n *Node) natsServerCount() int {
	count := 0
	if n.cluster == nil {
		if n.nats != nil {
			return 1
		}
		return 0
	}
	for _, m := range n.cluster.Members() {
		if m.Status == cluster.StatusAlive && m.RoleAddr("nats") != "" {
			count++
		}
	}
	if count == 0 && n.nats != nil {
		count = 1
	}
	return count
}

// tierRole runs a cache tier as a role of the node, so Close stops it.
type tierRole struct{ *cachetier.Tier }

func (tierRole) Ready() bool { return true }
func (tierRole) Status() any { return nil }
