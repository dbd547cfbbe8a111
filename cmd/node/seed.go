package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/scalestack/scalestack/pkg/app/seed"
	"github.com/scalestack/scalestack/pkg/launch"
)

const seedExamples = `  node seed                                   # the stack node up runs: 100 posts
  node seed --target http://127.0.0.30:8081 --posts 500 --authors 40
`

func runSeed(args []string, stdout, stderr io.Writer) error {
	opts := seed.DefaultOptions()
	fs := newFlagSet("seed", "seed [--target URL] [--posts N] [flags]", seedExamples, stderr)
	target := fs.String("target", "", "the blog's URL (default: the URL of the stack node up runs in --dir)")
	dir := dirFlag(fs)
	fs.IntVar(&opts.Posts, "posts", opts.Posts, "posts to write, spread over the authors")
	fs.IntVar(&opts.Authors, "authors", opts.Authors, "accounts that write them (existing ones log in)")
	fs.IntVar(&opts.MaxComments, "max-comments", opts.MaxComments, "most comments one post gets")
	fs.Uint64Var(&opts.Seed, "seed", opts.Seed, "seed of the corpus: the same seed writes the same blog")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if opts.Posts < 0 || opts.Authors < 1 || opts.MaxComments < 0 {
		return fmt.Errorf("%w: --posts, --max-comments must not be negative and --authors must be at least 1", errUsage)
	}
	if *target == "" {
		st, err := launch.LoadState(*dir)
		if err != nil {
			return fmt.Errorf("%w: give the blog's URL with --target (no stack found: %w)", errUsage, err)
		}
		*target = st.URL
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	began := time.Now()
	fmt.Fprintf(stdout, "seeding %s: %d posts by %d authors\n", *target, opts.Posts, opts.Authors)
	if err := seed.Run(ctx, strings.TrimRight(*target, "/"), opts, stdout); err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted")
		}
		return fmt.Errorf("seed %s: %w", *target, err)
	}
	fmt.Fprintf(stdout, "seeded in %.1fs: open %s\n", time.Since(began).Seconds(), *target)
	return nil
}
