// Command edgeserver runs pkg/cdn alone in front of a fixed origin, for the
// edge benchmark (bench/edge/run.sh).
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"github.com/scalestack/scalestack/pkg/cdn"
	"github.com/scalestack/scalestack/pkg/settings"
)

func main() {
	cfg := cdn.DefaultConfig()
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.62:18000", "listen address")
	flag.StringVar(&cfg.NodeName, "name", "edge-bench", "node name in X-Edge and Via")
	pprofAddr := flag.String("pprof", "", "serve /debug/pprof/ on this address (empty: off), to profile the hit path")
	settings.Register(flag.CommandLine, cfg.Settings())
	flag.Parse()
	if *pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { log.Println(http.ListenAndServe(*pprofAddr, mux)) }()
	}
	deps := cdn.Deps{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}

	e, err := cdn.New(cfg, deps)
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Open(); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := e.Close(); err != nil {
		log.Fatal(err)
	}
}
