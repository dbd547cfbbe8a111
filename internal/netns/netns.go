// Package netns makes test hosts out of Linux network namespaces, so that
// the node processes of one test or benchmark bind real, distinct addresses
// (with the default ports, as on separate machines) and a host can be cut
// off the network and brought back: the partitions that loopback addresses
// cannot show.
//
// A Net is N host namespaces and one hub namespace holding a bridge. Each
// host has a veth into the bridge, lo up, and the address 198.18.X.(i+1)/24,
// where 198.18.X.0/24 is a subnet of 198.18.0.0/15, the range RFC 2544
// reserves for benchmarking, that no other Net on the machine uses. A veth
// from the root namespace into the bridge (198.18.X.254) lets the test
// process itself reach every host, so its clients and status polls need no
// namespace of their own. The bridge lives in a namespace of its own
// because the root namespace's firewall may drop bridged traffic (Docker's
// FORWARD policy is DROP and bridge-nf-call-iptables is 1 on our machines).
//
// Partition drops every frame to and from one host's port inside the
// bridge (an nftables bridge-family rule in the hub), both directions, for
// existing TCP connections as for new ones. The host's own stack sees no
// error, no link change, nothing: its packets leave and are lost, as in a
// real network partition. Heal removes the rule.
//
// Everything a Net makes is named with its prefix, NAME-PID-XX (the name
// given to New, the process id in base 36 and the subnet byte in hex), so
// Close removes it by name, and Cleanup removes what a process that no
// longer runs left behind. It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)
// and the commands ip (iproute2), nft and nsenter.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotRoot is returned by New and Cleanup when the process is not root:
// making namespaces, links and firewall rules needs it.
var ErrNotRoot = errors.New("netns: network namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root")

// lockPath serialises the choice of a subnet between processes: two Nets
// made at the same moment must not pick the same 198.18.X.0/24.
const lockPath = "/run/scalestack-netns.lock"

// maxHosts leaves .254 of the /24 for the root namespace.
const maxHosts = 253

// cmdTimeout bounds each ip, nft or kill step of Partition, Heal, Close and
// Cleanup, which take no context: they are quick when the kernel is well.
const cmdTimeout = 30 * time.Second

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,5}$`)

// Net is a set of hosts on one bridge. Its methods are safe to call from
// one goroutine at a time.
type Net struct {
	prefix string
	subnet int // X of 198.18.X.0/24
	hub    string
	hosts  []*Host
	cut    map[int]bool
	closed bool
}

// Host is one network namespace of a Net.
type Host struct {
	index int
	ns    string
	addr  string
}

// New makes n hosts (1 to 253) named after name (1 to 6 characters, lower
// case letters and digits, starting with a letter), each with lo up and its
// own address, all reachable from one another and from the calling process.
// On an error it removes whatever it had made.
func New(ctx context.Context, name string, n int) (*Net, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("netns: name %q: want 1 to 6 lower-case letters or digits, starting with a letter (it prefixes link names, which are at most 15 bytes)", name)
	}
	if n < 1 || n > maxHosts {
		return nil, fmt.Errorf("netns: %d hosts: want 1 to %d", n, maxHosts)
	}
	if err := checkTools(); err != nil {
		return nil, err
	}
	unlock, err := lock()
	if err != nil {
		return nil, fmt.Errorf("netns: new %s: %w", name, err)
	}
	defer unlock()
	x, err := freeSubnet(ctx)
	if err != nil {
		return nil, fmt.Errorf("netns: new %s: %w", name, err)
	}
	nt := &Net{
		prefix: fmt.Sprintf("%s-%s-%02x", name, strconv.FormatInt(int64(os.Getpid()), 36), x),
		subnet: x,
		cut:    map[int]bool{},
	}
	nt.hub = nt.prefix + ".hub"
	for i := range n {
		nt.hosts = append(nt.hosts, &Host{index: i, ns: fmt.Sprintf("%s.%d", nt.prefix, i), addr: fmt.Sprintf("198.18.%d.%d", x, i+1)})
	}
	if err := nt.build(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("netns: new %s: %w", nt.prefix, err), nt.Close())
	}
	return nt, nil
}

// build makes the hub with its bridge, the root namespace's veth into it
// (whose address also reserves the subnet for other processes), then each
// host.
func (nt *Net) build(ctx context.Context) error {
	steps := [][]string{
		{"netns", "add", nt.hub},
		{"-n", nt.hub, "link", "set", "lo", "up"},
		{"-n", nt.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nt.hub, "link", "set", "br0", "up"},
		{"link", "add", nt.prefix, "type", "veth", "peer", "name", "root", "netns", nt.hub},
		{"-n", nt.hub, "link", "set", "root", "master", "br0"},
		{"-n", nt.hub, "link", "set", "root", "up"},
		{"addr", "add", nt.RootAddr() + "/24", "dev", nt.prefix},
		{"link", "set", nt.prefix, "up"},
	}
	for _, h := range nt.hosts {
		port := hubPort(h.index)
		steps = append(steps,
			[]string{"netns", "add", h.ns},
			[]string{"-n", h.ns, "link", "set", "lo", "up"},
			[]string{"link", "add", port, "netns", nt.hub, "type", "veth", "peer", "name", "eth0", "netns", h.ns},
			[]string{"-n", nt.hub, "link", "set", port, "master", "br0"},
			[]string{"-n", nt.hub, "link", "set", port, "up"},
			[]string{"-n", h.ns, "addr", "add", h.addr + "/24", "dev", "eth0"},
			[]string{"-n", h.ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := run(ctx, nil, "ip", s...); err != nil {
			return err
		}
	}
	return nil
}

// hubPort is the name of host i's veth end in the hub (names inside a
// namespace need no prefix: they go with it).
func hubPort(i int) string { return fmt.Sprintf("h%d", i) }

// Prefix is the name every namespace and root link of this Net starts
// with.
func (nt *Net) Prefix() string { return nt.prefix }

// Len is the number of hosts.
func (nt *Net) Len() int { return len(nt.hosts) }

// Host returns host i (0 ≤ i < Len()).
func (nt *Net) Host(i int) *Host { return nt.hosts[i] }

// RootAddr is the calling process's address on the Net (198.18.X.254):
// where the hosts see its connections come from.
func (nt *Net) RootAddr() string { return fmt.Sprintf("198.18.%d.254", nt.subnet) }

// Partition cuts host i off from every other host and from the calling
// process, both ways, until Heal(i). Packets of existing connections are
// dropped like those of new ones; neither side gets an error, only
// silence. Partitioning a host twice is the same as once.
func (nt *Net) Partition(i int) error {
	if i < 0 || i >= len(nt.hosts) {
		return fmt.Errorf("netns: partition host %d of %d", i, len(nt.hosts))
	}
	port := hubPort(i)
	// The bridge family's forward hook sees every frame the bridge passes
	// between ports, ARP included; one table per host makes Heal a delete.
	// Declaring the table before deleting it makes both idempotent.
	script := fmt.Sprintf(`table bridge cut_%[1]s {}
delete table bridge cut_%[1]s
table bridge cut_%[1]s {
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname %[1]q drop
		oifname %[1]q drop
	}
}
`, port)
	if err := nt.nft(script); err != nil {
		return fmt.Errorf("netns: partition %s: %w", nt.hosts[i].ns, err)
	}
	nt.cut[i] = true
	return nil
}

// Heal undoes Partition(i); healing a host that is not cut off does
// nothing.
func (nt *Net) Heal(i int) error {
	if i < 0 || i >= len(nt.hosts) {
		return fmt.Errorf("netns: heal host %d of %d", i, len(nt.hosts))
	}
	script := fmt.Sprintf("table bridge cut_%[1]s {}\ndelete table bridge cut_%[1]s\n", hubPort(i))
	if err := nt.nft(script); err != nil {
		return fmt.Errorf("netns: heal %s: %w", nt.hosts[i].ns, err)
	}
	delete(nt.cut, i)
	return nil
}

// Partitioned reports whether host i is cut off.
func (nt *Net) Partitioned(i int) bool { return nt.cut[i] }

func (nt *Net) nft(script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	return run(ctx, strings.NewReader(script), "nsenter", "--net="+nsPath(nt.hub), "--", "nft", "-f", "-")
}

// Close kills every process still running in a host (a namespace lives on
// while a process is in it), then removes the hosts, the hub and the root
// link by name. Calling it again does nothing.
func (nt *Net) Close() error {
	if nt.closed {
		return nil
	}
	nt.closed = true
	var namespaces []string
	for _, h := range nt.hosts {
		namespaces = append(namespaces, h.ns)
	}
	namespaces = append(namespaces, nt.hub)
	if err := remove(namespaces, []string{nt.prefix}); err != nil {
		return fmt.Errorf("netns: close %s: %w", nt.prefix, err)
	}
	return nil
}

// Addr is the host's IPv4 address, e.g. 198.18.3.1.
func (h *Host) Addr() string { return h.addr }

// Name is the host's namespace name (ip netns list shows it).
func (h *Host) Name() string { return h.ns }

// Index is the host's index in its Net.
func (h *Host) Index() int { return h.index }

// Command returns a command that runs name with args inside the host's
// network namespace (everything else, files included, is shared with the
// caller). It goes through nsenter, which execs name in its own process: a
// signal to cmd.Process (SIGKILL, SIGSTOP) reaches the program itself.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + nsPath(h.ns), "--", name}, args...)...)
}

// Cleanup removes what New(name) made in processes that are no longer
// running (a test binary that crashed or was killed before Close): it kills
// the processes still inside those hosts, then removes the namespaces and
// root links. Nets of running processes, this one included, are left
// alone, so it is safe to call while other tests use the same name.
func Cleanup(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("netns: cleanup: bad name %q", name)
	}
	if err := checkTools(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	nsRE := regexp.MustCompile(`^` + name + `-([0-9a-z]+)-[0-9a-f]{2}\.(hub|[0-9]+)$`)
	linkRE := regexp.MustCompile(`^` + name + `-([0-9a-z]+)-[0-9a-f]{2}$`)
	names, err := namespaceNames(ctx)
	if err != nil {
		return fmt.Errorf("netns: cleanup %s: %w", name, err)
	}
	var namespaces, links []string
	for _, ns := range names {
		if m := nsRE.FindStringSubmatch(ns); m != nil && !running(m[1]) {
			namespaces = append(namespaces, ns)
		}
	}
	rootLinks, err := linkNames(ctx)
	if err != nil {
		return fmt.Errorf("netns: cleanup %s: %w", name, err)
	}
	for _, l := range rootLinks {
		if m := linkRE.FindStringSubmatch(l); m != nil && !running(m[1]) {
			links = append(links, l)
		}
	}
	if err := remove(namespaces, links); err != nil {
		return fmt.Errorf("netns: cleanup %s: %w", name, err)
	}
	return nil
}

// running reports whether the process whose id is pid36 (base 36) exists.
func running(pid36 string) bool {
	pid, err := strconv.ParseInt(pid36, 36, 32)
	if err != nil {
		return true // not ours to judge: leave it
	}
	err = syscall.Kill(int(pid), 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// remove kills the processes inside namespaces, deletes the namespaces and
// then the root links (deleting the hub has usually taken the root link
// with it: a veth pair dies with either end). Absent ones are no error.
func remove(namespaces, links []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	existing, err := namespaceNames(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, ns := range existing {
		have[ns] = true
	}
	var errs []error
	for _, ns := range namespaces {
		if !have[ns] {
			continue
		}
		if err := killAll(ctx, ns); err != nil {
			errs = append(errs, err)
		}
		if err := run(ctx, nil, "ip", "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	rootLinks, err := linkNames(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	haveLink := map[string]bool{}
	for _, l := range rootLinks {
		haveLink[l] = true
	}
	for _, l := range links {
		if haveLink[l] {
			if err := run(ctx, nil, "ip", "link", "delete", l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// killAll sends SIGKILL to every process in namespace ns.
func killAll(ctx context.Context, ns string) error {
	out, err := output(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d in %s: %w", pid, ns, err))
		}
	}
	return errors.Join(errs...)
}

// namespaceNames lists the named network namespaces (ip netns list prints
// "NAME" or "NAME (id: N)").
func namespaceNames(ctx context.Context) ([]string, error) {
	out, err := output(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// linkNames lists the root namespace's links ("N: NAME@PEER: <...>").
func linkNames(ctx context.Context) ([]string, error) {
	out, err := output(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(f[1], "@")
		names = append(names, name)
	}
	return names, nil
}

var subnetRE = regexp.MustCompile(`inet 198\.18\.([0-9]+)\.`)

// freeSubnet returns an X such that no root address is in 198.18.X.0/24.
// Every Net holds one (RootAddr) for its whole life, so under the lock the
// choice is free of races with other processes.
func freeSubnet(ctx context.Context) (int, error) {
	out, err := output(ctx, "ip", "-4", "-o", "addr", "show")
	if err != nil {
		return 0, err
	}
	used := map[int]bool{}
	for _, m := range subnetRE.FindAllStringSubmatch(out, -1) {
		x, _ := strconv.Atoi(m[1])
		used[x] = true
	}
	for x := range 256 {
		if !used[x] {
			return x, nil
		}
	}
	return 0, errors.New("every subnet of 198.18.0.0/16 is in use (leftovers? see Cleanup)")
}

// lock takes an exclusive flock on lockPath; the returned function releases
// it.
func lock() (func(), error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// checkTools reports ErrNotRoot, or a missing command, before anything is
// made, so that the error says what to fix.
func checkTools() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	for _, c := range []string{"ip", "nft", "nsenter"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("netns: %s not found (packages iproute2, nftables, util-linux): %w", c, err)
		}
	}
	return nil
}

func nsPath(ns string) string { return "/run/netns/" + ns }

// run runs a command, with stdin when it is not nil; its error carries the
// command line and what the command said.
func run(ctx context.Context, stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}
