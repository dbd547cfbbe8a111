// Command cache runs the cache role's server (pkg/cache) alone, for
// bench/cache/run.sh to measure it beside redis-server. It serves until
// SIGINT or SIGTERM.
//
//	go run ./bench/cache -addr 127.0.0.1:6390 -cache-max-bytes 256MiB
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles on -pprof, for finding the hot path
	"os"
	"os/signal"
	"syscall"

	"github.com/scalestack/scalestack/pkg/cache"
	"github.com/scalestack/scalestack/pkg/settings"
)

func main() {
	cfg := cache.DefaultConfig()
	fs := flag.NewFlagSet("cache", flag.ExitOnError)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address")
	pprofAddr := fs.String("pprof", "", "serve /debug/pprof on this address (empty: off)")
	settings.Register(fs, cfg.Settings())
	fs.Parse(os.Args[1:])

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := cache.New(cfg, cache.Deps{Logger: log.With("role", "cache")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := srv.Open(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close()
}
