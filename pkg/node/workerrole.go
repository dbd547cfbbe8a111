package node

import (
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/worker"
)

// openWorker builds and opens the worker role: it reads and writes the
// store through the node's store client, like the app, and consumes jobs
// from the NATS servers membership names. It runs the blog's service stack
// with the app's settings (cache tier, purges, bcrypt cost), and shares
// the app's outbox folder setting (--app-outbox), so that one node running
// both writes one folder.
//
// With --app-services remote, its job handlers run over the node's clients
// of the service nodes, as the gateway's requests do.
func (n *Node) openWorker(wc worker.Config) error {
	ac := n.appConfig()
	wc.NodeName = n.cfg.Name
	wc.DataDir = n.cfg.DataDir
	wc.Blog = ac.ServicesConfig()
	wc.Outbox = n.mailOutbox()
	wc.NATSPassword, wc.NATSTLS = n.secrets.NATS, n.clientTLS()
	deps := worker.Deps{
		NATS:        n.natsClientURLs,
		NATSServers: n.natsServerCount,
		CacheNodes:  n.cacheNodes,
		Logger:      n.log.With("role", "worker"),
		Metrics:     n.reg,
	}
	if n.appRemote() {
		s := n.remoteServices()
		deps.Services = &s
	} else {
		if n.client == nil {
			n.client = n.newStoreClient()
		}
		deps.Store = n.client
	}
	// The worker's writes (thumbnails, comment counts) change public pages:
	// they purge them at the edges like the app's writes do.
	purger, err := n.openPurger("worker-purges", "worker")
	if err != nil {
		return err
	}
	if purger != nil { // a nil *Purger in the interface would not be nil
		deps.Purger = purger
	}
	w, err := worker.New(wc, deps)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return n.openRole("worker", w)
}

// mailOutbox is the folder the node writes outgoing e-mail to (the
// worker's jobs, the notifications service's events): --worker-outbox,
// else --app-outbox, else DATA/outbox, so that one node running several of
// them writes one folder.
func (n *Node) mailOutbox() string {
	if o := n.cfg.RoleConfig.Worker.Outbox; o != "" {
		return o
	}
	if o := n.cfg.RoleConfig.App.Outbox; o != "" {
		return o
	}
	return filepath.Join(n.cfg.DataDir, "outbox")
}

// appPublishers sets deps.JobQueue when the app runs with --jobs=queue: a
// publisher to the job queue, opened as a role of its own ("jobs") before
// the app so that it closes after the app has stopped publishing. It
// publishes with the node's job-queue settings (the worker's --jobs-*), so
// that both sides name the same streams.
//
// It also sets deps.Purger (--app-purge=on): the app's other NATS publisher.
func (n *Node) appPublishers(ac app.Config, deps *app.Deps) error {
	purger, err := n.openPurger("purges", "app")
	if err != nil {
		return err
	}
	if purger != nil {
		deps.Purger = purger
	}
	if !ac.QueuesJobs() {
		return nil
	}
	p, err := worker.NewPublisher(worker.PublisherConfig{
		Name:         n.cfg.Name + "-jobs",
		NATSPassword: n.secrets.NATS,
		NATSTLS:      n.clientTLS(),
		Jobs:         n.cfg.RoleConfig.Worker.Jobs,
	}, worker.PublisherDeps{NATS: n.natsClientURLs, NATSServers: n.natsServerCount, Logger: n.log.With("role", "app")})
	if err != nil {
		return fmt.Errorf("app: jobs: %w", err)
	}
	if err := n.openRole("jobs", p); err != nil {
		return err
	}
	deps.JobQueue = p
	if n.appRemote() {
		// The users service grants the badge (services.go): a gateway owns
		// no accounts.
		return nil
	}
	// With a queue, the app running the services in-process also consumes
	// the events that change what it owns: the supporter badge paid for on
	// the payments node.
	return n.openBadgeSubscriber()
}

// openPurger opens a publisher of edge purges as a role of its own (so that
// it closes after the role that purges through it), or returns nil with
// --app-purge=off. It connects once membership names a NATS server.
func (n *Node) openPurger(name, logRole string) (*worker.Purger, error) {
	if ac := n.cfg.RoleConfig.App; !ac.ServicesConfig().Purge {
		return nil, nil
	}
	pc := worker.DefaultPurgerConfig()
	pc.Name = n.cfg.Name + "-" + name
	pc.NATSPassword, pc.NATSTLS = n.secrets.NATS, n.clientTLS()
	deps := worker.PurgerDeps{NATS: n.natsClientURLs, Logger: n.log.With("role", logRole)}
	if n.reg != nil {
		deps.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"role": logRole}, n.reg)
	}
	p, err := worker.NewPurger(pc, deps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", logRole, err)
	}
	if err := n.openRole(name, p); err != nil {
		return nil, err
	}
	return p, nil
}

// validateWorker checks the worker's settings before the node starts, with
// the app's settings of the blog's service stack, which it will run.
func (rc *RoleConfigs) validateWorker(c *Config, wc worker.Config) error {
	wc.NodeName, wc.DataDir = c.Name, c.DataDir
	wc.Blog = rc.App.ServicesConfig()
	if err := wc.Validate(); err != nil {
		return c.roleErr(RoleWorker, err)
	}
	return nil
}

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
