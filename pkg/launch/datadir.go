package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/internal/durable"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// Data follows you between stages.
//
// Every stage keeps each node's data in DIR/data/NAME, and the stages name
// their store nodes differently: stage 1's is node-1, stages 2 and up have
// db-1 (and, from stage 4, replica-1..). After a failover the newest data
// is on a replica; after stage 1 it is on node-1. A stage that started its
// primary on its own older directory would serve old data and, worse,
// write new entries at an epoch that older logs share, so that no later
// comparison could tell which history is right: acknowledged writes would
// be gone.
//
// So before any process starts, the launcher reads the log position of
// every store directory under DIR/data (whatever node it belonged to, in
// this stage or not) and finds the newest log, by the rule the store's
// voters apply (boltdb.Position.Newer: the last entry's epoch, then the
// LSN). Then:
//
//   - The stage's configured primary (node-1 at stage 1, db-1 from stage 2)
//     starts from the newest data: if it does not hold it, its store file is
//     replaced by a copy of the newest (nothing runs, so the copy is
//     consistent), and its own older store files are kept in
//     NAME.before-TIME.
//   - With --store-failover the group elects its primary by vote, and a
//     majority that all hold an older log could elect one of them and
//     drop the newest entries. So the newest log is also copied to as many
//     more store nodes of the stage as it takes for a majority of the group
//     to hold it: every majority then has a node that refuses an older
//     candidate. (A voter the stage does not run cannot vote, so a
//     majority of the stage's own store nodes is enough, even when their
//     lease.json counts more voters.)
//
// Only the store's own files travel: store.db, and lease.json merged with
// the node's own (its promises stay its own; the voter sets are joined).
// The rest of a directory belongs to the node's identity (the JetStream
// directory, named after the NATS server, and the app's outbox) and stays.
// Store nodes older than the new primary catch up by themselves: a replica
// streams from its last LSN, or installs a snapshot when its log diverged
// (pkg/store/server, ship.go).
//
// Stage 10 splits the one store group of stages 1 to 9 into one group per
// service (users-db-1.., content-db-1..), each with its own history, and
// data travels only within a group. A group that has no data of its own
// yet (no directory of its nodes holds a log with an entry) begins as a
// copy of the default group's newest data, as a monolith's database is
// split by cloning it into each service's database: every service then
// reads only its own buckets, and the rest of the copy lies unread. The
// copy goes to the group's primary and, by the majority rule above, to as
// many more of its nodes. Its log's epochs and LSNs carry on in the group
// (the group's next primary takes an epoch above the copy's last, the
// gateways' read-your-writes LSNs are per group), but not the default
// group's lease.json: its voters and promises are another group's, and
// its voters, which stage 10 does not run, would count in the group's
// majority and stop its elections. The group's nodes find their voters
// among themselves, as in an empty start. Once a group has data of its
// own it is never replaced from the default group, and nothing flows
// back: a later stage 9 starts from the default group's data as it was.

// Files of a store node's data directory (pkg/store/server).
const (
	storeFile = "store.db"
	leaseFile = "lease.json"
)

// asideMark separates a node's name from the time in the name of a
// directory moved aside: data/db-1.before-20261207-201853.
const asideMark = ".before-"

// storeData is one store node's data directory found under DIR/data.
type storeData struct {
	Name string          // the node the directory belongs to
	Dir  string          // DIR/data/NAME
	Pos  boltdb.Position // where its log ends
}

// storeGroup is the store nodes a stage runs.
type storeGroup struct {
	// Primary is the node started with the primary role ("" if none).
	Primary string
	// Members are every store node, the primary first.
	Members []string
	// Failover is true when the group elects its primary (--store-failover).
	Failover bool
}

// storeGroupOf returns the store nodes of planned nodes of st in store
// group (Node.Group; "" is the one group of stages 1 to 9).
func storeGroupOf(st Stage, nodes []Node, group string) storeGroup {
	var g storeGroup
	for _, n := range nodes {
		primary := slices.Contains(n.Roles, "primary")
		if !primary && !slices.Contains(n.Roles, "replica") || n.Group != group {
			continue
		}
		if primary && g.Primary == "" {
			g.Primary = n.Name
			g.Members = slices.Insert(g.Members, 0, n.Name)
		} else {
			g.Members = append(g.Members, n.Name)
		}
		if hasFailover(st.specOf(n.Name).Flags) {
			g.Failover = true
		}
	}
	return g
}

// hasFailover reports whether node flags turn --store-failover on.
func hasFailover(flags []string) bool {
	on := false
	for _, f := range flags {
		name, val, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if name == "store-failover" {
			on = val == "" || val == "true" || val == "1"
		}
	}
	return on
}

// carry is one decision: node To starts from the store data of From.
type carry struct {
	From storeData
	To   string
	// Old is To's own data before, if it had any.
	Old *storeData
}

// planCarries decides which store nodes of g start from another node's
// data, given every store directory found (sorted by name).
func planCarries(g storeGroup, found []storeData) []carry {
	var newest *storeData
	for i := range found {
		f := &found[i]
		switch {
		case newest == nil, f.Pos.Newer(newest.Pos):
			newest = f
		case f.Pos.SameLog(newest.Pos) && f.Name == g.Primary:
			newest = f // the same history: the primary needs no copy
		case f.Pos.SameLog(newest.Pos) && slices.Contains(g.Members, f.Name) && !slices.Contains(g.Members, newest.Name):
			newest = f // a copy the stage runs reads better in the message
		}
	}
	if newest == nil || newest.Pos.LSN == 0 {
		return nil // nothing was ever written: nothing to lose
	}
	byName := map[string]*storeData{}
	for i := range found {
		byName[found[i].Name] = &found[i]
	}
	holds := func(name string) bool {
		d, ok := byName[name]
		return ok && d.Pos.SameLog(newest.Pos)
	}
	var out []carry
	add := func(name string) {
		c := carry{From: *newest, To: name}
		if d, ok := byName[name]; ok {
			old := *d
			c.Old = &old
		}
		out = append(out, c)
	}
	if g.Primary != "" && !holds(g.Primary) {
		add(g.Primary)
	}
	if !g.Failover {
		return out
	}
	holders := len(out)
	for _, m := range g.Members {
		if holds(m) {
			holders++
		}
	}
	need := len(g.Members)/2 + 1
	for _, m := range g.Members {
		if holders >= need {
			break
		}
		if m != g.Primary && !holds(m) {
			add(m)
			holders++
		}
	}
	return out
}

// planGroup decides which store nodes of g, the store group called name,
// start from another node's data, given every store directory found
// (sorted by name). Data travels only within a group, except that a group
// of stage 10 with no data of its own begins as a copy of the default
// group's newest (see the top of this file).
func planGroup(g storeGroup, name string, found []storeData) []carry {
	mine := slices.DeleteFunc(slices.Clone(found), func(d storeData) bool { return dataGroup(d.Name) != name })
	if name == "" || slices.ContainsFunc(mine, func(d storeData) bool { return d.Pos.LSN > 0 }) {
		return planCarries(g, mine)
	}
	// The group's own directories, if any, hold empty logs: the default
	// group's newest is newer than each of them, and planCarries copies it
	// to the primary and to a majority, as within a group.
	defaults := slices.DeleteFunc(slices.Clone(found), func(d storeData) bool { return dataGroup(d.Name) != "" })
	return planCarries(g, append(mine, defaults...))
}

// split reports whether c starts a stage-10 group from the default
// group's data.
func (c carry) split() bool { return dataGroup(c.To) != dataGroup(c.From.Name) }

// dataGroup returns the store group whose node owned the data directory
// called name: "content" for content-db-2 (stage 10 names the store nodes
// of group G G-db-N), "" for the one group of stages 1 to 9 (node-1, db-1,
// replica-N).
func dataGroup(name string) string {
	i := strings.LastIndex(name, "-db-")
	if i <= 0 {
		return ""
	}
	if _, err := strconv.Atoi(name[i+len("-db-"):]); err != nil {
		return ""
	}
	return name[:i]
}

// scanStoreData reads the log position of every store directory under
// dataDir: every DIR/data/NAME with a store.db, except directories moved
// aside earlier. A file it cannot read stops the start: guessing could
// lose what it holds.
func scanStoreData(dataDir string) ([]storeData, error) {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return nil, err
	}
	var out []storeData
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || strings.HasPrefix(name, ".") || strings.Contains(name, asideMark) {
			continue
		}
		dir := filepath.Join(dataDir, name)
		file := filepath.Join(dir, storeFile)
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			continue
		}
		pos, err := boltdb.ReadPosition(file, 2*time.Second)
		switch {
		case errors.Is(err, boltdb.ErrLocked):
			return nil, fmt.Errorf("%w: a node of an earlier stack still runs on this directory (lsof %s shows it); end it, then start again", err, file)
		case err != nil:
			return nil, fmt.Errorf("%w: node up cannot tell whether %s holds the newest data; move it away (mv %s %s.broken) or start from nothing with --fresh, which deletes every node's data", err, name, dir, dir)
		}
		out = append(out, storeData{Name: name, Dir: dir, Pos: pos})
	}
	return out, nil
}

// followData is Open's step between planning and starting: it carries the
// newest store data to the nodes that must start from it (see the top of
// this file) and prints one line for each, or one for a group that begins
// as a copy of the default group's data.
func (l *Launcher) followData(nodes []Node) error {
	dataDir := filepath.Join(l.cfg.Dir, "data")
	found, err := scanStoreData(dataDir)
	if err != nil {
		return fmt.Errorf("launch: store data in %s: %w", dataDir, err)
	}
	// Each store group has its own history: data travels only between the
	// directories of one group (stage 10 runs five, and the stages before
	// it one), except into a stage-10 group with no data yet (planGroup).
	var groups []string
	for _, n := range nodes {
		if IsStoreNode(n.Roles) && !slices.Contains(groups, n.Group) {
			groups = append(groups, n.Group)
		}
	}
	for _, g := range groups {
		carries := planGroup(storeGroupOf(l.cfg.Stage, nodes, g), g, found)
		var asides []string // of a split, for its one line
		for _, c := range carries {
			aside, err := carryData(dataDir, c, time.Now())
			if err != nil {
				kept := "nothing was changed"
				if aside != "" {
					kept = "its older directory is kept in " + aside
				}
				return fmt.Errorf("launch: %s must start from %s's newer data (%s), and copying it failed: %w (%s)", c.To, c.From.Name, c.From.Pos, err, kept)
			}
			l.log.Info("store data carried", "from", c.From.Name, "to", c.To, "group", g, "lsn", c.From.Pos.LSN, "epoch", c.From.Pos.LastEpoch, "kept", aside)
			if c.split() {
				if aside != "" {
					asides = append(asides, l.shortPath(aside))
				}
				continue
			}
			msg := fmt.Sprintf("%s starts from %s's data (%s)", c.To, c.From.Name, c.From.Pos)
			if c.Old != nil {
				msg += fmt.Sprintf("; its older data (%s) is kept in %s", c.Old.Pos, l.shortPath(aside))
			} else if aside != "" {
				msg += fmt.Sprintf("; its older lease state is kept in %s", l.shortPath(aside))
			}
			l.emit(Event{Kind: EventDataCarried, Node: c.To, Detail: msg})
		}
		if len(carries) > 0 && carries[0].split() {
			l.emit(Event{Kind: EventDataCarried, Node: carries[0].To, Detail: splitMessage(g, carries, asides)})
		}
	}
	return nil
}

// splitMessage is the one line that says a group begins as a copy of the
// default group's data: "users-db-1 starts from db-1's data (epoch 3, log
// 1234): the users group begins as a copy of the monolith's store; ...".
func splitMessage(group string, carries []carry, kept []string) string {
	to := make([]string, len(carries))
	for i, c := range carries {
		to[i] = c.To
	}
	verb := "starts"
	if len(to) > 1 {
		verb = "start"
	}
	msg := fmt.Sprintf("%s %s from %s's data (%s): the %s group begins as a copy of the monolith's store; the %s service reads only its own buckets",
		joinAnd(to), verb, carries[0].From.Name, carries[0].From.Pos, group, group)
	if len(kept) > 0 {
		msg += fmt.Sprintf("; the older store files are kept in %s", strings.Join(kept, ", "))
	}
	return msg
}

// joinAnd is "a", "a and b", "a, b and c".
func joinAnd(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// shortPath names path relative to the working directory when it is under
// it, as a person would type it.
func (l *Launcher) shortPath(path string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return path
}

// carryData makes DIR/data/c.To start from c.From's store. The store files
// c.To had (store.db, lease.json) move to DIR/data/c.To.before-TIME, which
// it returns ("" if there were none); the directory gets a copy of c.From's
// store file and the two lease.json merged; the node's other files
// (JetStream, outbox) stay where they are.
func carryData(dataDir string, c carry, now time.Time) (aside string, err error) {
	dst := filepath.Join(dataDir, c.To)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !storeOwned(e.Name()) {
			continue
		}
		if aside == "" {
			aside = asideName(dataDir, c.To, now)
			if err := os.Mkdir(aside, 0o755); err != nil {
				return "", fmt.Errorf("keep the older data: %w", err)
			}
		}
		if err := os.Rename(filepath.Join(dst, e.Name()), filepath.Join(aside, e.Name())); err != nil {
			return aside, fmt.Errorf("keep the older data: %w", err)
		}
	}
	var own leaseState // the node's own promises, now aside
	if aside != "" {
		if own, err = readLease(filepath.Join(aside, leaseFile)); err != nil {
			return aside, err
		}
	}
	if err := durable.CopyFile(filepath.Join(c.From.Dir, storeFile), filepath.Join(dst, storeFile), 0o600); err != nil {
		return aside, fmt.Errorf("copy %s: %w", storeFile, err)
	}
	var theirs leaseState // a split leaves the default group's voters and promises behind
	if !c.split() {
		if theirs, err = readLease(filepath.Join(c.From.Dir, leaseFile)); err != nil {
			return aside, err
		}
	}
	if merged, ok := mergeLease(own, theirs); ok {
		if err := durable.WriteFile(filepath.Join(dst, leaseFile), merged, 0o600); err != nil {
			return aside, fmt.Errorf("write %s: %w", leaseFile, err)
		}
	}
	return aside, errors.Join(durable.SyncDir(dst), durable.SyncDir(dataDir))
}

// storeOwned reports whether a file of a data directory is the store's:
// what a carried store replaces, and what stays in the directory aside.
func storeOwned(name string) bool {
	return name == storeFile || strings.HasPrefix(name, leaseFile) || strings.HasPrefix(name, ".snapshot-")
}

// asideName returns DIR/data/NAME.before-TIME, with a counter if two
// carries happen within one second.
func asideName(dataDir, name string, now time.Time) string {
	base := filepath.Join(dataDir, name+asideMark+now.UTC().Format("20060102-150405"))
	p := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
		p = fmt.Sprintf("%s-%d", base, i)
	}
}

// leaseState is the content of a store node's lease.json
// (pkg/store/server, lease.go), kept as raw fields so that the launcher
// does not depend on the server package.
type leaseState struct {
	VoteEpoch uint64            `json:"vote_epoch"`
	VoteFor   string            `json:"vote_for"`
	Voters    map[string]string `json:"voters"`
	present   bool
}

func readLease(path string) (leaseState, error) {
	var ls leaseState
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ls, nil
	}
	if err != nil {
		return ls, err
	}
	if err := json.Unmarshal(b, &ls); err != nil {
		return ls, fmt.Errorf("read %s: %w", path, err)
	}
	ls.present = true
	return ls, nil
}

// mergeLease joins a node's own lease state with the one that comes with
// the carried store: the newest promise (the node's own on a tie, so that
// it never votes twice in one epoch) and every voter either knew (voter
// sets only grow). ok is false when neither exists.
func mergeLease(own, carried leaseState) ([]byte, bool) {
	if !own.present && !carried.present {
		return nil, false
	}
	out := own
	if carried.VoteEpoch > own.VoteEpoch {
		out.VoteEpoch, out.VoteFor = carried.VoteEpoch, carried.VoteFor
	}
	out.Voters = map[string]string{}
	maps.Copy(out.Voters, carried.Voters)
	maps.Copy(out.Voters, own.Voters)
	b, err := json.Marshal(out)
	return b, err == nil
}
