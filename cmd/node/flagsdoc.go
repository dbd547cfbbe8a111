package main

import (
	"fmt"
	"io"

	"github.com/scalestack/scalestack/pkg/node"
)

// flagsDocHeader opens docs/flags.md.
const flagsDocHeader = `# Flags of ` + "`node run`" + `

<!-- Generated from the settings table (pkg/node/settings.go and each role's
Settings method) by: go run ./cmd/node flags -markdown > docs/flags.md
Do not edit by hand; cmd/node's TestFlagsDoc fails when this file is stale. -->

Every flag is also read from an environment variable: NODE_ and the flag's
name in upper case, with ` + "`_`" + ` for ` + "`-`" + ` (` + "`--lb-retries`" + ` is ` + "`NODE_LB_RETRIES`" + `), or from
the file that NODE_<FLAG>_FILE names, for secrets
(` + "`NODE_CACHE_PASSWORD_FILE=/run/secrets/cache`" + `). The command line wins over
the environment. ` + "`go run ./cmd/node run -h`" + ` prints the same list.

Every flag of a role starts with the role's prefix (` + "`lb-`, `app-`, `store-`, `cache-`, `edge-`, `worker-`, `gossip-`, `nats-`, `admin-`" + `)
but the node's own and the levers. A renamed flag keeps working under its
former name, and its former environment variable too, with a one-line
warning naming the new one.

Durations are written as Go durations (` + "`300ms`, `1.5s`, `2m`, `1h`" + `); sizes in
bytes, optionally with ` + "`KiB`, `MiB` or `GiB`" + `. A bad value is refused at start
with a message naming the flag and its variable, e.g.
` + "`node: --lb-retries (NODE_LB_RETRIES): -1 is negative`" + `, and exit status 2.
`

// runFlags prints every setting of `node run`, grouped by role, as help
// text or (-markdown) as docs/flags.md.
func runFlags(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("flags", "flags [-markdown]", "  node flags\n  go run ./cmd/node flags -markdown > docs/flags.md\n", stderr)
	markdown := fs.Bool("markdown", false, "write docs/flags.md (Markdown) instead of the help text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	writeFlags(stdout, *markdown)
	return nil
}

// writeFlags renders the table of `node run` with its defaults.
func writeFlags(w io.Writer, markdown bool) {
	cfg := node.DefaultConfig()
	lo := defaultLogOptions()
	t := runSettings(&cfg, &lo)
	if markdown {
		t.Markdown(w, flagsDocHeader)
		return
	}
	fmt.Fprintln(w, envHelp)
	t.Usage(w)
}
