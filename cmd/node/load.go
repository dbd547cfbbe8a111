package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/scalestack/scalestack/pkg/launch"
	"github.com/scalestack/scalestack/pkg/loadgen"
)

const loadExamples = `  node load                                   # the stack node up runs, 50/s for 30s
  node load --target http://127.0.0.30:8081 --rate 200 --duration 1m --users 100
  node load --mix browse=50,read=30,post=20 --read-your-writes --json run.json
  node load --mix ` + loadgen.ServicesMix + `   # stage 10: every service has ops of its own
`

func runLoad(args []string, stdout, stderr io.Writer) error {
	cfg := loadgen.DefaultConfig()
	fs := newFlagSet("load", "load [--target URL] [--rate R] [--duration D] [--users U] [--mix op=w,...] [flags]", loadExamples, stderr)
	fs.StringVar(&cfg.Target, "target", "", "the blog's URL (default: the URL of the stack node up runs in --dir)")
	dir := dirFlag(fs)
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "arrivals per second, kept whatever the stack does (open loop)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the run, after sign-up")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "users signed up before the run; each arrival is one of them")
	mix := fs.String("mix", loadgen.DefaultMix, "weight of each operation: browse, read, comment, post, signup, page (HTML), anon (public pages without a session), "+
		"post-image (a post and its cover image), search (a word of the posts), profile (a user's page), "+
		"tip (a tip with a test card and an Idempotency-Key; an unknown outcome is retried with the same key and checked for a double charge). "+
		"At stage 10, "+loadgen.ServicesMix+" gives every service ops of its own; the summary's \"worst outage\" column shows which stopped, and for how long")
	fs.BoolVar(&cfg.ReadYourWrites, "read-your-writes", false, "after a user's acknowledged write, that user's next arrival reads it back; report violations")
	fs.BoolVar(&cfg.VerifyWrites, "verify-writes", cfg.VerifyWrites, "at the end, read back every acknowledged post and comment and count lost writes")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "timeout of one request")
	fs.IntVar(&cfg.MaxInFlight, "max-in-flight", cfg.MaxInFlight, "most requests waiting for an answer; arrivals beyond are counted as not sent")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the choice of operations and users (0: from the clock)")
	jsonFile := fs.String("json", "", "also write the summary as JSON to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	m, err := loadgen.ParseMix(*mix)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.Mix = m
	if cfg.Target == "" {
		st, err := launch.LoadState(*dir)
		if err != nil {
			return fmt.Errorf("%w: give the blog's URL with --target (no stack found: %w)", errUsage, err)
		}
		cfg.Target = st.URL
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %s", errUsage, strings.TrimPrefix(err.Error(), "loadgen: "))
	}
	cfg.Progress = stdout

	// Ctrl-C ends the run early; the summary covers what was sent.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "load on %s: %.0f/s for %s, %d users, mix %s\n", cfg.Target, cfg.Rate, cfg.Duration, cfg.Users, cfg.Mix)
	s, err := loadgen.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted before the run began")
		}
		return err
	}
	s.Print(stdout)
	if *jsonFile != "" {
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonFile, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
		fmt.Fprintf(stdout, "\nsummary written to %s\n", *jsonFile)
	}
	return nil
}
