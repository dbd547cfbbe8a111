package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/scalestack/scalestack/pkg/cluster"
	"github.com/scalestack/scalestack/pkg/queue"
)

// runJobs inspects and repairs the job queue of stage 8: `dead` lists the
// jobs that failed every try, `retry ID|--all` replays them, `stats` shows
// depth, in-flight, rate and redeliveries per kind (docs/queue.md, Jobs).
func runJobs(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("jobs", "jobs [--dir DIR | --nats HOST:PORT,...] dead|retry ID|retry --all|stats",
		"  node jobs stats\n  node jobs dead\n  node jobs retry 0k3j5m7n9p1qr\n  node jobs retry --all\n  node jobs stats --nats 10.0.0.2:4222 --cluster-key-file cluster.key\n", stderr)
	dir := dirFlag(fs)
	servers := fs.String("nats", "", "client address of any NATS server of a cluster started by hand, comma list (default: the running store nodes' of the stack in --dir)")
	keys := addKeyFlags(fs, "NATS accepts only clients that know it")
	tlsCA := fs.String("tls-ca", "", "PEM CA of the cluster's internal TLS, when its nodes run with --tls-*: NATS speaks TLS")
	all := fs.Bool("all", false, "with retry: replay every dead job")
	limit := fs.Int("limit", 100, "with dead: list at most this many (0: all)")
	interval := fs.Duration("interval", time.Second, "with stats: sampling interval for the rate")
	pos, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: jobs: say dead, retry ID, retry --all or stats", errUsage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clusterKey, err := keys.clusterKey()
	if err != nil {
		return err
	}
	key, err := cluster.ParseKey(clusterKey)
	if err != nil {
		return fmt.Errorf("%w: --cluster-key: %v", errUsage, err)
	}
	urls, err := natsAddrs(*servers, *dir)
	if err != nil {
		return err
	}
	cc := queue.DefaultClientConfig()
	cc.Servers = func() []string { return urls }
	cc.Name = "node-jobs"
	cc.Password = cluster.DeriveSecret(key, cluster.PurposeNATS)
	if *tlsCA != "" {
		if cc.TLS, err = caConfig(*tlsCA); err != nil {
			return err
		}
	}
	// A wrong key is refused on every try: give up after a few.
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := queue.Connect(cctx, cc)
	ccancel()
	if err != nil {
		return fmt.Errorf("no NATS server at %s let us in (%v): give one with --nats, and the cluster's key with --cluster-key", strings.Join(urls, ","), err)
	}
	defer conn.Close()
	q, err := queue.NewJobQueue(conn.JetStream(), queue.DefaultJobsConfig())
	if err != nil {
		return err
	}
	switch pos[0] {
	case "dead":
		dead, err := q.Dead(ctx, *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tTRIES\tDIED\tERROR")
		for _, d := range dead {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", d.ID, d.Kind, d.Deliveries, d.DeadAt.Format(time.RFC3339), d.Error)
		}
		tw.Flush()
		fmt.Fprintf(stdout, "%d dead jobs\n", len(dead))
	case "retry":
		id := ""
		if len(pos) > 1 {
			id = pos[1]
		}
		if (id == "") == !*all {
			return fmt.Errorf("%w: jobs retry: give a job ID or --all", errUsage)
		}
		n, err := q.Retry(ctx, id)
		if errors.Is(err, queue.ErrNotDead) {
			return fmt.Errorf("no dead job %s: `%s jobs dead` lists them", id, progName())
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d jobs replayed\n", n)
	case "stats":
		st, err := q.Stats(ctx, *interval)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "KIND\tDEPTH\tIN-FLIGHT\tREDELIVERED\tDELIVERED\tRATE/S\tDEAD\t")
		for _, s := range st {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f\t%d\t\n", s.Kind, s.Depth, s.InFlight, s.Redelivered, s.Delivered, s.Rate, s.Dead)
		}
		tw.Flush()
	default:
		return fmt.Errorf("%w: jobs: unknown %q: say dead, retry or stats", errUsage, pos[0])
	}
	return nil
}
