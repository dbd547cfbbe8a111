package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"github.com/scalestack/scalestack/pkg/app/seed"
	"github.com/scalestack/scalestack/pkg/launch"
)

const seedExamples = `  node seed                                   # the stack node up runs: 100 posts by 12 authors
  node seed --posts 300                       # 200 more posts: the first 100 are the same ones
  node seed --seed 2                          # another 100 posts by the same authors
  node seed --target http://127.0.0.30:8081 --posts 500 --authors 40

Every author's password is ` + seed.DefaultPassword + ` (--password): log in as ada, or any author
the seed lists. Running it again with the same --seed and options writes only
what is missing (a run that was interrupted is completed), never a duplicate.
`

func runSeed(args []string, stdout, stderr io.Writer) error {
	opts := seed.DefaultOptions()
	fs := newFlagSet("seed", "seed [--target URL] [--posts N] [--seed N] [flags]", seedExamples, stderr)
	target := fs.String("target", "", "the blog's URL (default: the URL of the stack node up runs in --dir)")
	dir := dirFlag(fs)
	fs.IntVar(&opts.Posts, "posts", opts.Posts, "posts to make sure exist, spread over the authors; a larger number adds the missing ones")
	fs.IntVar(&opts.Authors, "authors", opts.Authors, "accounts that write them (existing ones log in)")
	fs.IntVar(&opts.MaxComments, "max-comments", opts.MaxComments, "most comments one post gets")
	fs.Uint64Var(&opts.Seed, "seed", opts.Seed, "seed of the corpus: the same seed writes the same blog, again and again; another seed adds other posts")
	fs.StringVar(&opts.Password, "password", opts.Password, "the password of every seeded author (log in as ada with it)")
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
	fmt.Fprintf(stdout, "seeding %s: %d posts by %d authors, seed %d\n", *target, opts.Posts, opts.Authors, opts.Seed)
	sum, err := seed.Run(ctx, strings.TrimRight(*target, "/"), opts, stdout)
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("seed interrupted: run the same command again to complete it (what is there is kept, nothing is written twice)")
	case errors.Is(err, seed.ErrWrongPassword):
		return fmt.Errorf("%w: give that password with --password", err)
	case err != nil:
		return err // it names the request that failed, with the target's URL
	}
	fmt.Fprintf(stdout, "seeded in %.1fs: open %s\n", sum.Elapsed.Seconds(), *target)
	return nil
}
