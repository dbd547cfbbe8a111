package netns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/netns"
)

// The test binary doubles as the program run inside the hosts: with
// NETNS_TEST_HELPER set it is a TCP echo server, a dialer, or a process
// that makes a Net and dies without closing it.
const helperEnv = "NETNS_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

func helper(mode, arg string) int {
	switch mode {
	case "echo":
		// Answers each line with the address the connection came from,
		// then the line: the test sees which host dialled.
		ln, err := net.Listen("tcp", arg)
		if err != nil {
			fmt.Println("listen:", err)
			return 1
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			go func() {
				defer c.Close()
				from, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "%s %s", from, line)
				}
			}()
		}
	case "dial":
		from, err := echo(arg)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println(from)
		return 0
	case "leak":
		nt, err := netns.New(context.Background(), "nsleak", 2)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println(nt.Prefix())
		return 0 // no Close: a crashed test
	}
	fmt.Println("unknown helper mode", mode)
	return 2
}

// echo dials addr, sends a line and returns the address the server saw.
func echo(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	from, _, _ := strings.Cut(line, " ")
	return from, nil
}

func self(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// startEcho runs the echo helper in host i on port 7000 and waits until it
// listens.
func startEcho(t *testing.T, nt *netns.Net, i int) string {
	t.Helper()
	addr := net.JoinHostPort(nt.Host(i).Addr(), "7000")
	cmd := nt.Host(i).Command(context.Background(), self(t), addr)
	cmd.Env = append(os.Environ(), helperEnv+"=echo")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("echo server in host %d: %q, %v", i, line, err)
	}
	return addr
}

// dialFrom runs the dial helper in host i and returns the address the echo
// server at addr saw, or the helper's error.
func dialFrom(t *testing.T, nt *netns.Net, i int, addr string) (string, error) {
	t.Helper()
	cmd := nt.Host(i).Command(context.Background(), self(t), addr)
	cmd.Env = append(os.Environ(), helperEnv+"=dial")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

func newNet(t *testing.T, name string, n int) *netns.Net {
	t.Helper()
	if err := netns.Cleanup(name); err != nil {
		t.Fatal(err)
	}
	nt, err := netns.New(context.Background(), name, n)
	if err != nil {
		t.Fatal(err) // not a skip: CI runs as root, and a test that cannot run has failed
	}
	t.Cleanup(func() {
		if err := nt.Close(); err != nil {
			t.Error(err)
		}
	})
	return nt
}

// leftovers lists the namespaces and root links whose name starts with
// prefix.
func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	var found []string
	for _, args := range [][]string{{"netns", "list"}, {"-o", "link", "show"}} {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			t.Fatalf("ip %v: %v", args, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			name := line
			if args[0] == "-o" {
				if f := strings.SplitN(line, ": ", 3); len(f) > 1 {
					name = f[1]
				}
			}
			if strings.HasPrefix(name, prefix) {
				found = append(found, strings.Fields(name)[0])
			}
		}
	}
	return found
}

// Two hosts and the test process reach each other over TCP from their own
// addresses; a partitioned host reaches nobody and nobody reaches it, an
// open connection included, while the others still talk; after Heal all
// works again, the open connection too; Close leaves nothing behind.
func TestPartitionAndHeal(t *testing.T) {
	nt := newNet(t, "nstest", 3)
	if nt.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", nt.Len())
	}
	seen := map[string]bool{nt.RootAddr(): true}
	for i := range 3 {
		a := nt.Host(i).Addr()
		if !strings.HasPrefix(a, "198.18.") || seen[a] {
			t.Fatalf("Host(%d).Addr() = %q: want a distinct address in 198.18.0.0/15", i, a)
		}
		seen[a] = true
	}
	at1 := startEcho(t, nt, 1)
	at2 := startEcho(t, nt, 2)

	if from, err := dialFrom(t, nt, 0, at1); err != nil || from != nt.Host(0).Addr() {
		t.Fatalf("host 0 -> host 1: from %q, %v; want from %s", from, err, nt.Host(0).Addr())
	}
	if from, err := echo(at1); err != nil || from != nt.RootAddr() {
		t.Fatalf("test process -> host 1: from %q, %v; want from %s", from, err, nt.RootAddr())
	}
	open, err := net.DialTimeout("tcp", at1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	openR := bufio.NewReader(open)
	roundTrip := func(msg string, wait time.Duration) error {
		open.SetDeadline(time.Now().Add(wait))
		if _, err := io.WriteString(open, msg+"\n"); err != nil {
			return err
		}
		line, err := openR.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasSuffix(line, " "+msg+"\n") {
			return fmt.Errorf("got %q", line)
		}
		return nil
	}
	if err := roundTrip("before", time.Second); err != nil {
		t.Fatalf("open connection before the partition: %v", err)
	}

	if err := nt.Partition(1); err != nil {
		t.Fatal(err)
	}
	if err := nt.Partition(1); err != nil {
		t.Fatalf("second Partition(1): %v", err)
	}
	if !nt.Partitioned(1) || nt.Partitioned(0) {
		t.Fatalf("Partitioned(1), Partitioned(0) = %v, %v; want true, false", nt.Partitioned(1), nt.Partitioned(0))
	}
	if from, err := dialFrom(t, nt, 0, at1); err == nil {
		t.Fatalf("host 0 -> partitioned host 1: answered from %s, want no answer", from)
	}
	if from, err := dialFrom(t, nt, 1, at2); err == nil {
		t.Fatalf("partitioned host 1 -> host 2: answered from %s, want no answer", from)
	}
	if from, err := echo(at1); err == nil {
		t.Fatalf("test process -> partitioned host 1: answered from %s, want no answer", from)
	}
	if err := roundTrip("during", time.Second); err == nil {
		t.Fatal("open connection to partitioned host 1 answered")
	} else if ne := (net.Error)(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("open connection to partitioned host 1: %v, want a timeout (silence, not an error)", err)
	}
	if _, err := dialFrom(t, nt, 0, at2); err != nil {
		t.Fatalf("host 0 -> host 2 while host 1 is cut off: %v", err)
	}

	if err := nt.Heal(1); err != nil {
		t.Fatal(err)
	}
	if err := nt.Heal(1); err != nil {
		t.Fatalf("second Heal(1): %v", err)
	}
	if _, err := dialFrom(t, nt, 0, at1); err != nil {
		t.Fatalf("host 0 -> host 1 after Heal: %v", err)
	}
	if _, err := echo(at1); err != nil {
		t.Fatalf("test process -> host 1 after Heal: %v", err)
	}
	// The line sent during the partition is retransmitted once the path is
	// back (after the retransmission timer's backoff, hence the wait), and
	// its answer comes before the next one's.
	open.SetDeadline(time.Now().Add(20 * time.Second))
	if line, err := openR.ReadString('\n'); err != nil || !strings.HasSuffix(line, " during\n") {
		t.Fatalf("open connection after Heal: %q, %v; want the answer to the line sent during the partition", line, err)
	}
	if err := roundTrip("after", 5*time.Second); err != nil {
		t.Fatalf("open connection after Heal: %v", err)
	}

	prefix := nt.Prefix()
	if err := nt.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nt.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if left := leftovers(t, prefix); len(left) > 0 {
		t.Fatalf("after Close: %v remain", left)
	}
}

// Close kills what still runs in a host, so no namespace outlives it.
func TestCloseKillsProcessesInHosts(t *testing.T) {
	nt := newNet(t, "nsproc", 1)
	cmd := nt.Host(0).Command(context.Background(), "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	if err := nt.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sleep in host 0 still runs 10s after Close")
	}
}

// Cleanup removes the Net of a process that died without Close, and leaves
// the Nets of running processes alone.
func TestCleanupRemovesLeftoversOfDeadProcesses(t *testing.T) {
	// Whatever happens below, nothing named nsleak of a dead process stays.
	t.Cleanup(func() {
		if err := netns.Cleanup("nsleak"); err != nil {
			t.Error(err)
		}
	})
	cmd := exec.Command(self(t))
	cmd.Env = append(os.Environ(), helperEnv+"=leak")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("leak helper: %v: %s", err, out)
	}
	dead := strings.TrimSpace(string(out))
	if got := leftovers(t, dead); len(got) != 4 { // hub, 2 hosts, root link
		t.Fatalf("the dead process's Net %s: found %v, want its hub, 2 hosts and root link", dead, got)
	}
	live := newNet(t, "nsleak", 1)
	if err := netns.Cleanup("nsleak"); err != nil {
		t.Fatal(err)
	}
	if got := leftovers(t, dead); len(got) > 0 {
		t.Fatalf("after Cleanup: %v of the dead process remain", got)
	}
	if got := leftovers(t, live.Prefix()); len(got) != 3 {
		t.Fatalf("after Cleanup: this process's Net has %v, want its hub, host and root link", got)
	}
}

func TestNewRefusesBadArguments(t *testing.T) {
	for _, tt := range []struct {
		name string
		n    int
	}{
		{"", 1}, {"toolong", 1}, {"Upper", 1}, {"1st", 1}, {"a.b", 1}, {"ok", 0}, {"ok", 254},
	} {
		if nt, err := netns.New(context.Background(), tt.name, tt.n); err == nil {
			nt.Close()
			t.Errorf("New(%q, %d) succeeded, want an error", tt.name, tt.n)
		}
	}
}
