package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/pkg/node"
	"github.com/scalestack/scalestack/pkg/settings"
)

// redisLog adapts slog to go-redis's logger.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}

const runExamples = `  # stage 1: the blog and its database in one process
  node run --roles app,primary

  # three nodes by hand on one machine (each on its own loopback address)
  node run --roles primary --name db-1 --addr 127.0.0.2
  node run --roles app --name app-1 --addr 127.0.0.30 --join 127.0.0.2:7946
  node run --roles app --name app-2 --addr 127.0.0.31 --join 127.0.0.2:7946

  # across machines: the same key on every node, from a file (a key on the
  # command line is visible to every user of the machine)
  (umask 077; node keygen > cluster.key)      # once; copy it to every machine
  node run --roles primary --name db-1 --addr 10.0.0.2 --cluster-key-file cluster.key
  node run --roles app --name app-1 --addr 10.0.0.3 --join 10.0.0.2:7946 --cluster-key-file cluster.key
  node status --admin 10.0.0.2:9090 --cluster-key-file cluster.key
`

// logOptions are the settings of the node's log, which cmd/node reads
// itself: the logger is built here, not in pkg/node.
type logOptions struct {
	Format logFormat
	Level  logLevel
}

func defaultLogOptions() logOptions { return logOptions{Format: "text", Level: "info"} }

// logFormat is --log-format: text or json lines.
type logFormat string

func (f logFormat) String() string { return string(f) }

func (f *logFormat) Set(s string) error {
	v, err := settings.OneOf(s, logFormat("text"), logFormat("json"))
	if err == nil {
		*f = v
	}
	return err
}

// logLevel is --log-level: debug, info, warn or error.
type logLevel string

func (l logLevel) String() string { return string(l) }

func (l *logLevel) Set(s string) error {
	v, err := settings.OneOf(s, logLevel("debug"), logLevel("info"), logLevel("warn"), logLevel("error"))
	if err == nil {
		*l = v
	}
	return err
}

// runSettings is the settings table of `node run`: the node's and every
// role's (node.Config.Settings), and the log's.
func runSettings(cfg *node.Config, lo *logOptions) *settings.Table {
	t := cfg.Settings()
	t.Add(
		settings.Setting{Name: "log-format", Role: "node", Usage: "log format: text or json (one object a line)", Value: &lo.Format},
		settings.Setting{Name: "log-level", Role: "node", Usage: "lowest level logged: debug, info, warn or error", Value: &lo.Level},
	)
	return t
}

// newLogger builds the structured logger of a node: text or JSON lines on
// stderr, with the node's name on every line.
func newLogger(w io.Writer, lo logOptions, name string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(lo.Level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, lo.Level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch lo.Format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("%w: --log-format %q: want text or json", errUsage, lo.Format)
	}
	return slog.New(h).With("node", name), nil
}

func runNode(args []string, stdout, stderr io.Writer) error {
	cfg := node.DefaultConfig()
	lo := defaultLogOptions()
	t := runSettings(&cfg, &lo)
	t.SetWarnings(stderr)
	usage := "run --roles R[,R...] [--name NAME] [--addr IP] [--join HOST:PORT,...] [--data DIR] [flags]"
	if err := parseSettings("run", usage, runExamples, t, args, stderr); err != nil {
		return err
	}
	for _, name := range node.SecretFlagsIn(args) {
		fmt.Fprintf(stderr, "warning: --%s on the command line is visible to every user of this machine (ps, /proc); give it as %s, or in a file named by %s_FILE%s\n",
			name, envName(name), envName(name), fileFlagHint(t, name))
	}
	return serve(cfg, lo, stdout, stderr)
}

// fileFlagHint names the flag that reads a secret from a file, if there is one.
func fileFlagHint(t *settings.Table, name string) string {
	if _, ok := t.Lookup(name + "-file"); !ok {
		return ""
	}
	return " or --" + name + "-file"
}

// runStage1 is `node` with no arguments: the blog and its primary in one
// process on 127.0.0.1, data in ./data. The node is called node-1, as
// `node up --stage 1` calls it: the X-Served-By a learner sees is the
// same either way. (`node run` without --name keeps the host's name,
// which tells apart nodes run by hand on several machines.)
func runStage1(stdout, stderr io.Writer) error {
	cfg := node.DefaultConfig()
	cfg.Name = "node-1"
	cfg.RoleNames = []string{node.RoleApp, node.RolePrimary}
	cfg.DataDir = "data"
	return serve(cfg, defaultLogOptions(), stdout, stderr)
}

// serve opens a node, waits for SIGINT or SIGTERM, and closes it. A second
// signal while closing exits at once.
func serve(cfg node.Config, lo logOptions, stdout, stderr io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return usageIfConfig(err)
	}
	log, err := newLogger(stderr, lo, cfg.Name)
	if err != nil {
		return err
	}
	cfg.Logger = log
	// go-redis (the app's cache tier) logs through a process-wide logger;
	// route it into the node's structured log at debug level, so a dead
	// cache node is one debug line per dial, not noise on stderr.
	redis.SetLogger(redisLog{log.With("role", "app", "component", "go-redis")})
	n, err := node.New(cfg)
	if err != nil {
		return usageIfConfig(err)
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	if err := n.Open(); err != nil {
		return usageIfConfig(err)
	}
	printURLs(stdout, n)

	s := <-sig
	log.Info("signal received, shutting down", "signal", s.String())
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		return err
	case s := <-sig:
		log.Warn("second signal, exiting now", "signal", s.String())
		return errors.New("interrupted during shutdown")
	}
}

// printURLs tells the person what to open.
func printURLs(w io.Writer, n *node.Node) {
	c := n.Config()
	fmt.Fprintf(w, "node %s is up (roles %s)\n", c.Name, strings.Join(c.RoleNames, ","))
	for _, p := range []struct{ port, what string }{
		{"edge", "edge (CDN)"}, {"lb", "load balancer"}, {"app", "blog"}, {"store", "store API"}, {"cache", "cache (Redis protocol)"},
	} {
		if a := n.Addr(p.port); a != "" {
			scheme := "http://"
			switch {
			case p.port == "cache" && !c.TLS.IsZero():
				scheme = "rediss://"
			case p.port == "cache":
				scheme = "redis://"
			case p.port == "store" && !c.TLS.IsZero():
				scheme = "https://"
			}
			fmt.Fprintf(w, "  %-22s %s%s\n", p.what, scheme, a)
		}
	}
	fmt.Fprintf(w, "  %-22s http://%s/status\n", "admin", n.AdminAddr())
	if a := n.Addr("app"); a != "" && !c.Has(node.RoleLB) {
		fmt.Fprintf(w, "\nOpen http://%s in your browser. Ctrl-C stops the node.\n", a)
	}
}

// usageIfConfig turns a configuration error into a usage error (exit 2).
func usageIfConfig(err error) error {
	if errors.Is(err, node.ErrConfig) {
		return fmt.Errorf("%w: %s", errUsage, strings.TrimPrefix(err.Error(), node.ErrConfig.Error()+": "))
	}
	return err
}
