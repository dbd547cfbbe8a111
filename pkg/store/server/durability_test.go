package server_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/server"
)

// serveDirEnv, when set, makes the test binary a store server on that data
// directory instead of running tests: the kill -9 test re-executes itself
// with it, so that it can SIGKILL a real process.
const serveDirEnv = "SCALESTACK_STORE_TEST_SERVE_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(serveDirEnv); dir != "" {
		os.Exit(serveForTest(dir))
	}
	os.Exit(m.Run())
}

// serveForTest runs a store server on dir, prints "ADDR host:port" once it
// serves, and runs until SIGTERM (a graceful Close) or SIGKILL.
func serveForTest(dir string) int {
	cfg := server.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.NodeName = "child"
	cfg.DataDir = dir
	srv, err := server.New(cfg, server.Deps{})
	if err == nil {
		err = srv.Open()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	fmt.Printf("ADDR %s\n", srv.Addr())
	<-sig
	if err := srv.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	return 0
}

// child is a store server in a process of its own.
type child struct {
	cmd  *exec.Cmd
	addr string
}

// startChild starts a store server process on dir and waits until it serves.
func startChild(tb testing.TB, dir string) *child {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("StdoutPipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start store process: %v", err)
	}
	c := &child{cmd: cmd}
	tb.Cleanup(func() { c.kill() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if a, ok := strings.CutPrefix(s.Text(), "ADDR "); ok {
				line <- a
			}
		}
		close(line)
	}()
	select {
	case a, ok := <-line:
		if !ok {
			tb.Fatalf("store process exited before serving")
		}
		c.addr = a
	case <-time.After(30 * time.Second):
		tb.Fatalf("store process did not report its address within 30s")
	}
	return c
}

// kill sends SIGKILL and reaps the process; it is safe to call twice.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// ack is one write acknowledged to a writer.
type ack struct {
	value string
	lsn   uint64
}

// TestKillNineLosesNoAcknowledgedWrite is the store's done-when: writers
// commit through the Client into a store process, the process is killed with
// SIGKILL mid-stream, restarted on the same data, and every acknowledged
// write is read back; several rounds over the same file. Each transaction
// also updates a per-writer "last" key, so a restart must show both halves
// of every acknowledged transaction.
func TestKillNineLosesNoAcknowledgedWrite(t *testing.T) {
	const (
		rounds  = 8
		writers = 8
		perKill = 200 // acknowledged writes before each kill
	)
	dir := t.TempDir()
	acked := map[string]ack{}        // key -> acknowledged value and LSN
	lastAcked := map[string]string{} // writer -> its last acknowledged key
	var maxLSN uint64

	for round := range rounds {
		p := startChild(t, dir)
		c := newClient(t, p.addr)
		verifyAcked(t, c, round, acked, lastAcked, maxLSN)

		ctx, stop := context.WithCancel(context.Background())
		var (
			mu     sync.Mutex
			n      atomic.Int64
			killed = make(chan struct{})
			once   sync.Once
			wg     sync.WaitGroup
		)
		for w := range writers {
			writer := fmt.Sprintf("w%d", w)
			wg.Go(func() {
				for seq := 0; ctx.Err() == nil; seq++ {
					key := fmt.Sprintf("r%d-%s-%06d", round, writer, seq)
					value := strings.Repeat(key, 1+seq%7)
					lsn, err := c.Txn(ctx, store.Put("dur", key, []byte(value)), store.Put("last", writer, []byte(key)))
					if err != nil {
						select {
						case <-killed: // expected: the process is gone
						default:
							t.Errorf("Txn(%s) before the kill: %v", key, err)
						}
						return
					}
					mu.Lock()
					acked[key] = ack{value: value, lsn: lsn}
					lastAcked[writer] = key
					maxLSN = max(maxLSN, lsn)
					mu.Unlock()
					if n.Add(1) == perKill {
						once.Do(func() {
							close(killed)
							p.kill() // SIGKILL while the other writers are mid-request
						})
					}
				}
			})
		}
		wg.Wait()
		stop()
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("round %d: %d writes acknowledged in total, LSN up to %d, then SIGKILL", round, len(acked), maxLSN)
	}
	p := startChild(t, dir)
	c := newClient(t, p.addr)
	verifyAcked(t, c, rounds, acked, lastAcked, maxLSN)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("graceful stop of the store process: %v", err)
	}
}

// verifyAcked reads back every acknowledged write after a restart.
func verifyAcked(tb testing.TB, c *store.Client, round int, acked map[string]ack, lastAcked map[string]string, maxLSN uint64) {
	tb.Helper()
	ctx := context.Background()
	var tr store.Trace
	tctx := store.WithTrace(ctx, &tr)
	for key, a := range acked {
		got, err := c.Get(tctx, "dur", key)
		if err != nil {
			tb.Fatalf("round %d: acknowledged %s (LSN %d) lost after kill -9: %v", round, key, a.lsn, err)
		}
		if string(got) != a.value {
			tb.Fatalf("round %d: Get(dur, %s) = %q, want %q", round, key, got, a.value)
		}
	}
	for writer, key := range lastAcked {
		got, err := c.Get(ctx, "last", writer)
		// The writer's last key may be newer than its last acknowledged one
		// (a transaction in flight at the kill may have committed), never older.
		if err != nil || string(got) < key {
			tb.Fatalf("round %d: Get(last, %s) = %q, %v, want %q or later", round, writer, got, err, key)
		}
	}
	if len(acked) > 0 && tr.LSN < maxLSN {
		tb.Fatalf("round %d: store answers at LSN %d, below the acknowledged LSN %d", round, tr.LSN, maxLSN)
	}
}
