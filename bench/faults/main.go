// Command faults is issue 14's fault run: the stage-8 stack on eight hosts
// made of network namespaces, posts and sign-ups through the lb, and a
// fault every -every (kill -9 of the primary, SIGSTOP of a replica, a
// partition of the primary, kill -9 of an app, the cache, the worker),
// each undone -hold later; then the end state is checked and the issue's
// table printed in Markdown on stdout, with a line per second and per
// event on stderr. internal/faultrun does the work; run.sh builds the
// node binary and runs this. Needs root. Method: bench/README.md, "## Fault
// run (stage 8, eight hosts)".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/internal/faultrun"
	"github.com/scalestack/scalestack/internal/netns"
)

func main() { os.Exit(run()) }

// run is main with deferred cleanups that run before the exit status is
// returned: 1 when a run could not be made or was interrupted.
func run() int {
	nodeBin := flag.String("node", "", "path of the node binary (required; run.sh builds it)")
	runs := flag.Int("runs", 5, "runs, each on a fresh cluster")
	duration := flag.Duration("duration", 95*time.Second, "how long the writer writes in each run")
	first := flag.Duration("first", 10*time.Second, "when the first fault comes after the writer starts")
	every := flag.Duration("every", 15*time.Second, "time between two faults")
	hold := flag.Duration("hold", 5*time.Second, "how long a fault lasts before the node is restarted, continued or healed")
	rate := flag.Float64("rate", 14, "posts per second (open loop)")
	signups := flag.Float64("signup-rate", 1, "sign-ups per second (open loop), each a welcome e-mail job")
	users := flag.Int("users", 20, "logged-in users signed up before each run")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout of the writer (past the app's 5 s store deadline, so its answer shows)")
	faultList := flag.String("faults", "all", "comma-separated faults in schedule order: kill-primary, pause-replica, partition-primary, kill-app, kill-cache, kill-worker, or all")
	keep := flag.String("keep", "", "keep every run's data directories and node logs under this directory (default: removed)")
	flag.Parse()
	log.SetFlags(0)
	if *nodeBin == "" {
		log.Fatal("faults: -node is required (bench/faults/run.sh builds it)")
	}
	faults, err := faultrun.ParseFaults(*faultList)
	if err != nil {
		log.Fatalf("faults: -faults: %v", err)
	}
	// A run killed before its cleanup (kill -9 of this program) left hosts
	// and node processes behind: they hold a subnet and CPU.
	if err := netns.Cleanup("faults"); err != nil {
		log.Fatalf("faults: %v", err)
	}
	// Ctrl-C or SIGTERM ends the current run; Run removes its hosts and
	// processes before returning.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	base := *keep
	if base == "" {
		if base, err = os.MkdirTemp("", "bench-faults-"); err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(base)
	}
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
	var names []string
	for _, f := range faults {
		names = append(names, string(f))
	}
	began := time.Now().UTC()
	var results []*faultrun.Result
	for n := 1; n <= *runs; n++ {
		progress("run %d/%d", n, *runs)
		r, err := faultrun.Run(ctx, faultrun.Config{
			NodeBin: *nodeBin, Dir: filepath.Join(base, fmt.Sprintf("run-%d", n)), NetName: "faults", Run: n,
			Duration: *duration, First: *first, Every: *every, Hold: *hold, Faults: faults,
			Rate: *rate, SignupRate: *signups, Users: *users, Timeout: *timeout, Progress: progress,
		})
		if err != nil {
			progress("run %d: %v", n, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		results = append(results, r)
		progress("run %d done: problems %v; targets missed %v", n, r.Problems(), r.TargetMisses())
		for _, e := range r.Examples {
			progress("  %s", e)
		}
	}
	if *keep != "" {
		progress("data and logs kept in %s", *keep)
	}
	fmt.Printf("## Fault run %s: %d of %d runs × %v, faults %s every %v from %v, each undone after %v; %.0f posts/s and %.1f sign-ups/s through the lb, %d users, %v request timeout\n\n",
		began.Format("2006-01-02 15:04 UTC"), len(results), *runs, *duration, strings.Join(names, ", "), *every, *first, *hold, *rate, *signups, *users, *timeout)
	if len(results) > 0 {
		fmt.Print(faultrun.Table(results))
	}
	if len(results) < *runs {
		return 1
	}
	return 0
}
