package worker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/queue"
	"github.com/scalestack/scalestack/pkg/settings"
	"github.com/scalestack/scalestack/pkg/store"
)

// Config holds the worker role's settings; what the node injects (the
// store, NATS, the purger, the cache nodes, logger and metrics) is in Deps.
type Config struct {
	// NodeName names this worker in logs and as its NATS connection name.
	NodeName string
	// DataDir is the node's data directory; the outbox lives under it
	// unless Outbox is set.
	DataDir string
	// Outbox is the folder e-mails are written to as <job id>.eml when SMTP
	// is empty. Default DataDir/outbox (the same folder the app's inline
	// jobs use).
	Outbox string
	// SMTP, when set (host:port), sends e-mails over SMTP (net/smtp, no
	// auth, for a local relay such as MailHog) instead of writing files. A
	// marker file <job id>.sent in Outbox keeps a redelivered job from
	// sending again; a crash between the send and the marker sends twice,
	// and the Message-ID (the job id) lets the receiver drop the copy.
	SMTP string
	// SMTPFrom is the envelope and From address. Default
	// "noreply@scalestack.invalid".
	SMTPFrom string
	// Blog holds the settings of the blog's service stack the worker runs
	// its jobs on: the node gives it the app's (app.Config.ServicesConfig),
	// so that the worker's writes invalidate the cache tier and purge the
	// edges as the app's do. Default: the app's defaults.
	Blog app.ServicesConfig
	// NATSPassword is presented to NATS servers that require one (derived
	// from the cluster key by the node). Empty presents none.
	NATSPassword string
	// NATSTLS, when not nil, is the client side of TLS to NATS servers that
	// require it (the node\'s --tls-ca). Nil speaks plain TCP.
	NATSTLS *tls.Config
	// Concurrency is how many jobs this worker runs at once, over all
	// kinds (--worker-concurrency). Default 8: jobs mostly wait on the
	// store, so a few per core keep it busy; more hold more jobs that a
	// crash hands back only after the ack wait.
	Concurrency int
	// JobTimeout bounds one job's run. Default 30s; the queue's AckWait
	// must be longer, or a slow job is given to a second worker meanwhile.
	JobTimeout time.Duration
	// ViewWindow is how long view jobs are gathered before one increment
	// per post is written. Default 500ms: the views shown lag by that much,
	// and a popular post costs one store write per window.
	ViewWindow time.Duration
	// StopTimeout bounds how long Close waits for the jobs in hand. Default
	// 30s (JobTimeout); jobs still running after it are abandoned, and the
	// queue redelivers them after their ack wait.
	StopTimeout time.Duration
	// Jobs configures the job streams (tries, back-off, ack wait). Its
	// Kinds, Servers and Logger are set by the worker.
	Jobs queue.JobsConfig
}

// Deps are what the worker role is given rather than told: New takes them
// beside the Config, and Config.Validate does not look at them.
type Deps struct {
	// Store is the store the blog services use (a *store.Client). Required
	// unless Services is set.
	Store store.Store
	// Services, when set, replaces the services built over Store (tests);
	// the cache tier and purges still wrap them as Config.Blog says.
	Services *app.Services
	// NATS returns the client URLs of the NATS servers known now; the
	// worker connects in the background and follows the cluster. Required.
	NATS func() []string
	// NATSServers returns how many NATS servers the cluster has, for the
	// streams' replicas. Nil means one.
	NATSServers func() int
	// CacheNodes returns the cache nodes alive now, for the cache tier
	// (Config.Blog.Cache). Nil means none: reads go to the store, and
	// nothing is invalidated.
	CacheNodes func() []string
	// Purger receives the purges of the worker's writes (thumbnails,
	// comment counts) when Config.Blog.Purge is set; nil sends none.
	Purger app.Purger
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Metrics registers the worker's metrics; nil does not register. The
	// cache tier's are not registered here: the app's on the same node
	// has the same names.
	Metrics prometheus.Registerer
}

// Errors of New about missing dependencies.
var (
	// ErrNoStore: Deps has neither Store nor Services.
	ErrNoStore = errors.New("no store: Deps.Store (or Deps.Services) is required")
	// ErrNoNATS: Deps.NATS is nil.
	ErrNoNATS = errors.New("no NATS: Deps.NATS is required")
)

// DefaultConfig returns the defaults; the node fills the rest.
func DefaultConfig() Config {
	return Config{
		NodeName:    "worker",
		SMTPFrom:    "noreply@scalestack.invalid",
		Concurrency: 8,
		JobTimeout:  30 * time.Second,
		ViewWindow:  500 * time.Millisecond,
		StopTimeout: 30 * time.Second,
		Jobs:        queue.DefaultJobsConfig(),
		Blog:        blogDefaults(),
	}
}

func blogDefaults() app.ServicesConfig {
	ac := app.DefaultConfig()
	return ac.ServicesConfig()
}

// Validate reports the first unusable field.
func (c *Config) Validate() error {
	switch {
	case c.Outbox == "" && c.DataDir == "":
		return fieldErr("Outbox", "or DataDir is required")
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fieldErr("Concurrency", "%d: want 1 to 1024", c.Concurrency)
	case c.JobTimeout <= 0:
		return fieldErr("JobTimeout", "%v must be positive", c.JobTimeout)
	case c.JobTimeout >= c.Jobs.AckWait:
		return fieldErr("JobTimeout", "%v must be shorter than Jobs.AckWait %v", c.JobTimeout, c.Jobs.AckWait)
	case c.ViewWindow <= 0:
		return fieldErr("ViewWindow", "%v must be positive", c.ViewWindow)
	case c.StopTimeout <= 0:
		return fieldErr("StopTimeout", "%v must be positive", c.StopTimeout)
	case c.SMTPFrom == "":
		return fieldErr("SMTPFrom", "is required")
	}
	jc := c.Jobs
	jc.Kinds = Kinds()
	if err := jc.Validate(); err != nil {
		return settings.Within("worker config", "Jobs", err)
	}
	if err := c.Blog.Validate(); err != nil {
		return fmt.Errorf("worker config: Blog: %w", err)
	}
	return nil
}

// fieldErr reports an unusable value of one field of Config.
func fieldErr(field, format string, args ...any) error {
	return settings.Errorf("worker config", field, format, args...)
}

// Settings returns the worker's settings, bound to c's fields, with c's
// current values as defaults. The e-mail folder is the app's
// (--app-outbox), which the node copies into Outbox.
func (c *Config) Settings() []settings.Setting {
	s := settings.Of("worker")
	return []settings.Setting{
		s("worker-concurrency", "Concurrency", "jobs this worker runs at once, over all kinds (count, 1-1024)", settings.Int(&c.Concurrency)),
		s("worker-job-timeout", "JobTimeout", "time limit of one job; below the queue's ack wait (duration)", settings.Duration(&c.JobTimeout)),
		s("worker-view-window", "ViewWindow", "how long view jobs are gathered into one increment per post (duration)", settings.Duration(&c.ViewWindow)),
		s("worker-smtp", "SMTP", "send e-mail to this SMTP server, host:port (no auth, a local relay), instead of writing .eml files to the outbox folder", settings.String(&c.SMTP)).Formerly("smtp"),
		s("worker-smtp-from", "SMTPFrom", "envelope and From address of the e-mails sent", settings.String(&c.SMTPFrom)),
		s("worker-max-deliver", "Jobs.MaxDeliver", "tries of a job before it is dead (count)", settings.Int(&c.Jobs.MaxDeliver)).Formerly("jobs-max-deliver"),
		s("worker-retry-backoff", "Jobs.BackoffBase", "delay before the second try of a failed job, doubled on each further try (duration)", settings.Duration(&c.Jobs.BackoffBase)).Formerly("jobs-backoff"),
	}
}

// Kinds returns the job kinds the worker consumes: every kind of the blog.
func Kinds() []string {
	return []string{app.JobWelcome, app.JobNotifyFollowers, app.JobCommentAdded, app.JobThumbnail, app.JobView, app.JobIndex}
}
