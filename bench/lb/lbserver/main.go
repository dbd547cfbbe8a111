// Command lbserver runs pkg/lb alone, configured by the same flags as the
// node's lb role plus --addr, so that bench/lb can measure the balancer
// without the rest of the node.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/scalestack/scalestack/pkg/lb"
	"github.com/scalestack/scalestack/pkg/settings"
)

func main() {
	cfg := lb.DefaultConfig()
	fs := flag.NewFlagSet("lbserver", flag.ExitOnError)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	fs.StringVar(&cfg.NodeName, "name", "lb-bench", "node name")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here until exit")
	settings.Register(fs, cfg.Settings())
	_ = fs.Parse(os.Args[1:])
	deps := lb.Deps{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lbserver:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "lbserver:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	l, err := lb.New(cfg, deps)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lbserver:", err)
		os.Exit(2)
	}
	if err := l.Open(); err != nil {
		fmt.Fprintln(os.Stderr, "lbserver:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := l.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "lbserver:", err)
	}
}
