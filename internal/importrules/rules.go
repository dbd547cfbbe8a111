// Package importrules states which packages of the module may depend on
// which, as a table (Rules) that its test checks against `go list -deps`.
//
// The rules keep each side of the stack cheap to import: the blog's domain
// packages see the store and the queue only as clients, each technology
// (bbolt, nats-server, memberlist) is adapted by one package, and only the
// role wiring (pkg/node, cmd/node) and the test harnesses see everything.
// docs/architecture.md draws the same rules as a package map.
package importrules

import (
	"slices"
	"strconv"
	"strings"
)

const mod = "github.com/scalestack/scalestack/"

// The heavy dependencies each adapted by one package.
const (
	bbolt      = "go.etcd.io/bbolt/..."
	natsServer = "github.com/nats-io/nats-server/..."
	memberlist = "github.com/hashicorp/memberlist/..."
)

// Rule forbids some dependencies to some packages. A pattern is an import
// path, or a path ending in "/..." that stands for it and every path
// under it.
type Rule struct {
	// Packages selects the packages the rule applies to. Each pattern must
	// match a package of the module, so a rename cannot silently retire a
	// rule.
	Packages []string
	// Except takes packages out of Packages. Nil: none.
	Except []string
	// Forbid lists the dependencies the packages may not have. Each
	// pattern must match a package of the module's dependency graph, so a
	// typo cannot make a rule vacuous.
	Forbid []string
	// Direct checks only the packages' own imports. False: every
	// dependency, however indirect, which is what a rule about cost means.
	Direct bool
	// Reason says why, for the message of a violation.
	Reason string
}

// Rules are the import rules of the module. Test files are not bound by
// them (a test may start a real server); `go list -deps` without -test
// does not see their imports.
var Rules = []Rule{
	{
		Packages: []string{mod + "pkg/app/...", mod + "pkg/worker"},
		Forbid: []string{bbolt, natsServer, memberlist,
			mod + "pkg/store/boltdb", mod + "pkg/store/server", mod + "pkg/queue/natsserver",
			mod + "pkg/cluster", mod + "pkg/node"},
		Reason: "the blog's domain reaches the store and the queue as clients (store.Store, the queue's Conn); " +
			"it must build and run on a node that has no database, no NATS server and no membership (stage 10)",
	},
	{
		Packages: []string{mod + "pkg/app/accounts", mod + "pkg/app/posts", mod + "pkg/app/comments",
			mod + "pkg/app/media", mod + "pkg/app/search", mod + "pkg/app/notify", mod + "pkg/app/payments", mod + "pkg/app/svc"},
		Forbid: []string{"github.com/nats-io/...", mod + "pkg/queue/..."},
		Reason: "a service causes side effects only through the Jobs interface (pkg/app/svc), " +
			"so it runs alike with --jobs=inline, with the queue, and in a test",
	},
	{
		Packages: []string{mod + "pkg/app/events"},
		Forbid: []string{mod + "pkg/app/accounts", mod + "pkg/app/posts", mod + "pkg/app/comments",
			mod + "pkg/app/media", mod + "pkg/app/search", mod + "pkg/app/notify", mod + "pkg/app/payments"},
		Reason: "the events transport carries svc.Event between any services and knows none of them; " +
			"the node joins a service's outbox and handlers to it",
	},
	{
		Packages: []string{mod + "pkg/app/content"},
		Forbid:   []string{mod + "pkg/app", "github.com/nats-io/...", mod + "pkg/queue/..."},
		Reason: "the content service (stage 10) serves posts, comments and media over the wire and writes its events " +
			"to its outbox; the gateway (pkg/app) imports it for its clients, and the node wires its events to NATS",
	},
	{
		Packages: []string{mod + "pkg/app/svc/rpc"},
		Forbid: []string{mod + "pkg/app", mod + "pkg/app/accounts", mod + "pkg/app/posts", mod + "pkg/app/comments",
			mod + "pkg/app/media", mod + "pkg/app/search", mod + "pkg/app/notify", mod + "pkg/app/payments", "github.com/nats-io/...", mod + "pkg/queue/..."},
		Reason: "the services' wire (stage 10) is shared by the gateway and every service: it knows svc's errors and " +
			"no service, so a service node and the gateway import it without importing each other",
	},
	{
		Packages: []string{mod + "pkg/store"},
		Forbid: []string{bbolt, "github.com/nats-io/...", memberlist,
			mod + "pkg/store/boltdb", mod + "pkg/store/server"},
		Reason: "pkg/store is the domain and the client every app and worker imports; " +
			"it may cost them net/http, not a database engine",
	},
	{
		Packages: []string{mod + "pkg/queue"},
		Forbid:   []string{natsServer, bbolt, memberlist, mod + "pkg/queue/natsserver", mod + "pkg/store/..."},
		Reason:   "pkg/queue is the client of the queue; the embedded server is pkg/queue/natsserver's",
	},
	{
		Packages: []string{mod + "pkg/store/boltdb"},
		Forbid:   []string{mod + "pkg/store/server", "github.com/nats-io/...", memberlist},
		Reason:   "the engine knows nothing of replication or the cluster: the store role drives it",
	},
	{
		Packages: []string{mod + "pkg/store/server", mod + "pkg/queue/natsserver"},
		Forbid:   []string{memberlist, mod + "pkg/cluster", mod + "pkg/node"},
		Reason:   "a server learns its peers through an interface (store.Resolver, SetPeers) that the node implements from membership",
	},
	{
		Packages: []string{mod + "pkg/store/server"},
		Forbid:   []string{"github.com/nats-io/..."},
		Reason:   "the store's lease is decided by the group's store nodes over HTTP, not by NATS (docs/replication.md)",
	},
	{
		Packages: []string{mod + "pkg/queue/natsserver"},
		Forbid:   []string{bbolt, mod + "pkg/store/..."},
		Reason:   "the NATS server keeps its own JetStream files and needs nothing of the store",
	},
	{
		Packages: []string{mod + "pkg/lb/...", mod + "pkg/cache/...", mod + "pkg/cdn/..."},
		Forbid:   []string{bbolt, natsServer, memberlist, mod + "pkg/cluster", mod + "pkg/node", mod + "pkg/store/..."},
		Reason:   "the lb, the cache and the edge are given their backends and peers as interfaces; they need no store and no membership",
	},
	{
		Packages: []string{mod + "..."},
		Except:   []string{mod + "pkg/store/boltdb"},
		Forbid:   []string{bbolt},
		Direct:   true,
		Reason:   "one package adapts bbolt; everything else goes through it",
	},
	{
		Packages: []string{mod + "..."},
		Except:   []string{mod + "pkg/queue/natsserver"},
		Forbid:   []string{natsServer},
		Direct:   true,
		Reason:   "one package embeds nats-server; everything else goes through it",
	},
	{
		Packages: []string{mod + "..."},
		Except:   []string{mod + "pkg/cluster"},
		Forbid:   []string{memberlist},
		Direct:   true,
		Reason:   "one package speaks memberlist; everything else goes through pkg/cluster",
	},
	{
		Packages: []string{mod + "..."},
		Except:   []string{mod + "pkg/node", mod + "cmd/node", mod + "internal/testcluster"},
		Forbid:   []string{mod + "pkg/node"},
		Reason:   "only cmd/node and the test harness compose a whole node; a package that reached pkg/node would see everything",
	},
}

// Package is what Check needs of one package of `go list -deps -json`.
type Package struct {
	ImportPath string
	Imports    []string // its own imports
	Deps       []string // every dependency, however indirect
}

// Violation is one forbidden dependency of one package.
type Violation struct {
	Package string
	Dep     string
	Chain   []string // Package, the imports that lead to Dep, and Dep
	Rule    Rule
}

func (v Violation) String() string {
	return v.Package + " depends on " + v.Dep + " (" + strings.Join(v.Chain, " -> ") + "): " + v.Rule.Reason
}

// Match reports whether path matches pattern (an import path, or one
// ending in "/..." for it and everything under it).
func Match(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchAny(patterns []string, path string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return Match(p, path) })
}

// Check returns every violation of rules among pkgs, and the problems of
// the rules themselves: a pattern that matches nothing.
func Check(rules []Rule, pkgs []Package) (violations []Violation, problems []string) {
	byPath := make(map[string]Package, len(pkgs))
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	for i, r := range rules {
		for _, pat := range r.Packages {
			if !slices.ContainsFunc(pkgs, func(p Package) bool { return Match(pat, p.ImportPath) }) {
				problems = append(problems, ruleName(i, r)+": Packages pattern "+pat+" matches no package")
			}
		}
		for _, pat := range r.Forbid {
			if !slices.ContainsFunc(pkgs, func(p Package) bool { return Match(pat, p.ImportPath) }) {
				problems = append(problems, ruleName(i, r)+": Forbid pattern "+pat+" matches no package of the graph")
			}
		}
		for _, p := range pkgs {
			if !matchAny(r.Packages, p.ImportPath) || matchAny(r.Except, p.ImportPath) {
				continue
			}
			deps := p.Deps
			if r.Direct {
				deps = p.Imports
			}
			for _, d := range deps {
				if matchAny(r.Forbid, d) {
					violations = append(violations, Violation{Package: p.ImportPath, Dep: d, Chain: chain(byPath, p.ImportPath, d), Rule: r})
				}
			}
		}
	}
	return violations, problems
}

func ruleName(i int, r Rule) string {
	return "rule " + strconv.Itoa(i) + " (" + strings.Join(r.Packages, " ") + ")"
}

// chain finds the shortest path of imports from one package to another,
// so that a violation names the import to remove.
func chain(byPath map[string]Package, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur == to {
			var path []string
			for p := to; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return path
		}
		for _, next := range byPath[cur].Imports {
			if _, seen := prev[next]; !seen {
				prev[next] = cur
				queue = append(queue, next)
			}
		}
	}
	return []string{from, "...", to}
}
