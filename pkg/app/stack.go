package app

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/store"
)

// ServicesConfig holds the settings of the blog's service stack: the
// services over the store, read through the cache tier and purging at the
// edges as configured. The app role and the worker role both run the stack
// (Config.ServicesConfig gives the app's settings, which the node hands the
// worker too), so that a worker's writes invalidate the cache and purge the
// edges as the app's do.
type ServicesConfig struct {
	// BcryptCost is the password hashing cost (Config.BcryptCost).
	BcryptCost int
	// Cache reads posts, feed pages and comments through the cache tier
	// and invalidates them on every write (Config.Cache "on").
	Cache bool
	// CacheTier tunes the cache tier; its Nodes, Logger and Metrics are set
	// from ServicesDeps, its MACKey from CacheMACKey when that is set.
	CacheTier cachetier.Config
	// CacheMACKey seals what the stack puts in the cache tier
	// (Config.CacheMACKey): every app and worker of a cluster has the same.
	CacheMACKey []byte
	// CachePages and PageSize say which feed pages are cached
	// (Config.CachePages, Config.PageSize).
	CachePages, PageSize int
	// Purge wraps the writes so that they purge what they changed at the
	// edges through ServicesDeps.Purger (Config.Purge "on").
	Purge bool
}

// Validate reports the first unusable field.
func (c *ServicesConfig) Validate() error {
	switch {
	case c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost:
		return fmt.Errorf("services config: BcryptCost %d: want %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	case c.PageSize < 1 || c.PageSize > 100:
		return fmt.Errorf("services config: PageSize %d: want 1 to 100", c.PageSize)
	case c.CachePages < 1 || c.CachePages > 100:
		return fmt.Errorf("services config: CachePages %d: want 1 to 100", c.CachePages)
	case len(c.CacheMACKey) > 0 && len(c.CacheMACKey) < 16:
		return fmt.Errorf("services config: CacheMACKey of %d bytes: want at least 16", len(c.CacheMACKey))
	}
	if c.Cache {
		if err := c.CacheTier.Validate(); err != nil {
			return fmt.Errorf("services config: CacheTier: %w", err)
		}
	}
	return nil
}

// ServicesDeps are what the service stack is given.
type ServicesDeps struct {
	// Store is the store the services use. Required unless Services is set.
	Store store.Store
	// Services, when set, replaces the services built over Store; the cache
	// tier and purges still wrap them.
	Services *Services
	// Purger receives the purges of writes when ServicesConfig.Purge is
	// set; nil sends none.
	Purger Purger
	// CacheNodes returns the cache nodes alive now (cachetier.Config.Nodes).
	// Nil means none: every lookup goes to the store.
	CacheNodes func() []string
	// Logger receives the cache tier's logs; nil discards them.
	Logger *slog.Logger
	// Metrics registers the cache tier's collectors; nil registers none
	// (one stack per node registers them: a node running both the app and
	// the worker gives Metrics to the app's only).
	Metrics prometheus.Registerer
}

// Stack is the blog's service stack as a role runs it.
type Stack struct {
	// Services are the blog's services, wrapped as configured.
	Services Services
	// Tier is the cache tier the services read through, nil when
	// ServicesConfig.Cache is off. The role that runs the stack opens it
	// before use and closes it after its last request or job.
	Tier *cachetier.Tier
}

// NewStack builds the blog's service stack: the services over deps.Store
// (or deps.Services), read through the cache tier when cfg.Cache is set,
// purging at the edges when cfg.Purge is. Purges wrap outside the cache, so
// that an edge's refill after the purge does not find the cache tier still
// holding the old value.
func NewStack(cfg ServicesConfig, deps ServicesDeps) (Stack, error) {
	var s Stack
	switch {
	case deps.Services != nil:
		s.Services = *deps.Services
	case deps.Store != nil:
		s.Services = NewServices(deps.Store, cfg.BcryptCost)
	default:
		return Stack{}, fmt.Errorf("service stack: %w", ErrNoStore)
	}
	if cfg.Cache {
		t, err := newTier(cfg, deps)
		if err != nil {
			return Stack{}, fmt.Errorf("service stack: %w", err)
		}
		s.Tier = t
		s.Services = WithCache(s.Services, t, CacheOptions{PageSize: cfg.PageSize, Pages: cfg.CachePages, Group: cfg.CacheTier.Group})
	}
	if cfg.Purge {
		s.Services = WithPurges(s.Services, deps.Purger)
	}
	return s, nil
}

// newTier builds the cache tier of cfg over deps' cache nodes.
func newTier(cfg ServicesConfig, deps ServicesDeps) (*cachetier.Tier, error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tc := cfg.CacheTier
	tc.Nodes, tc.Logger, tc.Metrics = deps.CacheNodes, log, deps.Metrics
	if len(cfg.CacheMACKey) > 0 {
		tc.MACKey = cfg.CacheMACKey
	}
	if len(tc.MACKey) == 0 {
		// Without a cluster key the node binds loopback only: a note, not
		// a warning, or every local stack would warn.
		log.Info("cache entries are sealed with the public development key (no --cluster-key): fit for loopback only, where whoever can write to the cache can forge them")
	}
	if deps.CacheNodes == nil {
		log.Warn("no cache nodes given; the cache tier will go to the store for everything")
	}
	t, err := cachetier.New(tc)
	if err != nil {
		return nil, fmt.Errorf("cache tier: %w", err)
	}
	return t, nil
}
