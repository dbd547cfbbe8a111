package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// The primary's side of replication.
//
// A replica opens GET /v1/replicate?from=N&prev_epoch=E&epoch=K&node=NAME&addr=A:
// from is the first LSN it wants, prev_epoch the epoch of its entry at
// from-1 (0 when it has none), epoch the newest epoch it has seen. The
// primary answers
//
//   - 421 when it is not the primary (X-Store-Primary names the one it knows),
//     and also when the replica has seen a newer epoch: this primary is stale;
//   - 410 when the replica must bootstrap from GET /v1/snapshot: its entry
//     at from-1 is no longer in the primary's log, or differs from the
//     primary's (the replica's log diverged: it is a former primary whose
//     last writes were never acknowledged, and they are dropped);
//   - 200, after which the connection is taken over (hijacked) and carries
//     frames both ways: log entries and heartbeats to the replica, acks
//     (applied and durable LSN) back.

// Paths of the replication endpoints.
const (
	pathReplicate = "/v1/replicate"
	pathSnapshot  = "/v1/snapshot"
	pathPromote   = "/v1/promote"
	pathHandover  = "/v1/handover"
	pathChecksum  = "/v1/checksum"
	pathLease     = "/v1/lease" // lease messages between store nodes (lease.go)
)

// shipBatch is the most entries read from the log per round.
const shipBatch = 256

func (a *api) replicate(w http.ResponseWriter, r *http.Request) {
	rp := a.repl
	q := r.URL.Query()
	from, err1 := strconv.ParseUint(q.Get("from"), 10, 64)
	prevEpoch, err2 := strconv.ParseUint(q.Get("prev_epoch"), 10, 64)
	seen, err3 := strconv.ParseUint(q.Get("epoch"), 10, 64)
	node := q.Get("node")
	if err := errors.Join(err1, err2, err3); err != nil || from == 0 || node == "" {
		a.fail(w, fmt.Errorf("replicate: want from>=1, prev_epoch, epoch and node: %w", store.ErrInvalid))
		return
	}
	db := a.db
	if seen > db.Epoch() {
		rp.demote(fmt.Sprintf("replica %s has seen epoch %d, newer than ours %d", node, seen, db.Epoch()))
		a.fail(w, fmt.Errorf("replicate: this node's epoch %d is older than %d: %w", db.Epoch(), seen, store.ErrNotPrimary))
		return
	}
	ctx, ok := rp.shipContext()
	if !ok {
		a.fail(w, fmt.Errorf("replicate: %w", rp.gate()))
		return
	}
	if reason := a.needSnapshot(from-1, prevEpoch); reason != "" {
		a.failAt(w, db.LSN(), fmt.Errorf("replicate from %d: %s; bootstrap from %s: %w", from, reason, pathSnapshot, store.ErrCompacted))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		a.fail(w, fmt.Errorf("replicate: hijack: %v: %w", err, store.ErrUnavailable))
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{}) // the server's timeouts are for requests, not streams
	head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/x-scalestack-log\r\n%s: %s\r\n%s: %d\r\n\r\n",
		store.HeaderNode, a.node, store.HeaderEpoch, db.Epoch())
	if _, err := brw.WriteString(head); err != nil {
		return
	}
	p := &replicaPeer{name: node, addr: q.Get("addr"), since: time.Now(), applied: from - 1, durable: from - 1}
	rp.addPeer(p)
	defer rp.removePeer(p)
	rp.log.Info("replica connected", "replica", node, "from", from, "lsn", db.LSN(), "epoch", db.Epoch())
	defer rp.log.Info("replica disconnected", "replica", node)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // acks; ends the stream when the replica goes away
		defer cancel()
		br := bufio.NewReader(brw.Reader)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(3*a.repl.s.cfg.HeartbeatInterval + time.Second))
			f, err := ReadFrame(br)
			if err != nil {
				return
			}
			if len(f) < 1 || f[0] != frameAck {
				return
			}
			v, _, err := parseUvarints(f[1:], 2)
			if err != nil {
				return
			}
			rp.ack(p, v[0], v[1])
		}
	}()
	go func() { <-ctx.Done(); conn.Close() }() // unblocks a write to a dead replica
	if err := rp.ship(ctx, brw.Writer, p, from); err != nil && ctx.Err() == nil {
		rp.log.Warn("replication stream ended", "replica", node, "err", err)
	}
}

// needSnapshot says why a replica whose last entry is (last, epoch) cannot
// stream from last+1, or "" if it can.
func (a *api) needSnapshot(last, epoch uint64) string {
	db := a.db
	if last > db.LSN() {
		return fmt.Sprintf("the replica is at LSN %d, past the primary's %d: its log diverged", last, db.LSN())
	}
	if last == 0 {
		if _, err := db.ReadLog(context.Background(), 1, 1); errors.Is(err, store.ErrCompacted) {
			return "the log no longer starts at 1"
		}
		return ""
	}
	have, ok, err := db.EntryEpoch(last)
	switch {
	case err != nil:
		return err.Error()
	case !ok:
		return fmt.Sprintf("entry %d is no longer in the log", last)
	case have != epoch:
		return fmt.Sprintf("entry %d has epoch %d here, %d on the replica: its log diverged", last, have, epoch)
	}
	return ""
}

// ship writes log entries from `from` on, and a heartbeat whenever the log
// is idle, until ctx ends or the connection fails.
func (r *replication) ship(ctx context.Context, w *bufio.Writer, p *replicaPeer, from uint64) error {
	db := r.s.DB()
	next := from
	hb := time.NewTicker(r.s.cfg.HeartbeatInterval)
	defer hb.Stop()
	for {
		changed := db.Changed()
		entries, err := db.ReadLog(ctx, next, shipBatch)
		if err != nil {
			if errors.Is(err, store.ErrCompacted) {
				_ = WriteFrame(w, append([]byte{frameStop}, "log compacted past the replica: bootstrap from a snapshot"...))
				_ = w.Flush()
			}
			return err
		}
		for _, e := range entries {
			if err := WriteFrame(w, append([]byte{frameEntry}, boltdb.EncodeEntry(e)...)); err != nil {
				return err
			}
			next = e.LSN + 1
		}
		if len(entries) > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
			p.mu.Lock()
			p.sent = next - 1
			p.mu.Unlock()
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-hb.C:
			if err := WriteFrame(w, uvarints(frameHeartbeat, db.LSN(), db.Epoch())); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}

func (r *replication) addPeer(p *replicaPeer) {
	r.peersMu.Lock()
	defer r.peersMu.Unlock()
	if old, ok := r.peers[p.name]; ok && old != p {
		r.log.Info("replica reconnected, replacing its old stream", "replica", p.name)
	}
	r.peers[p.name] = p
}

func (r *replication) removePeer(p *replicaPeer) {
	r.peersMu.Lock()
	defer r.peersMu.Unlock()
	if r.peers[p.name] == p {
		delete(r.peers, p.name)
	}
}

// ack records what a replica reports and wakes writers waiting for Sync.
func (r *replication) ack(p *replicaPeer, applied, durable uint64) {
	p.mu.Lock()
	p.applied, p.durable = max(p.applied, applied), max(p.durable, durable)
	p.mu.Unlock()
	r.peersMu.Lock()
	close(r.acked)
	r.acked = make(chan struct{})
	r.peersMu.Unlock()
}

// snapshot streams a consistent copy of the database as frames: a begin
// frame (LSN, epoch, size), data frames, and an end frame with the total
// size and the CRC-32C of the whole file.
func (a *api) snapshot(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.repl.shipContext(); !ok {
		a.fail(w, fmt.Errorf("snapshot: %w", a.repl.gate()))
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a large file over a slow link takes its time
	w.Header().Set("Content-Type", "application/x-scalestack-snapshot")
	sw := &snapWriter{w: bufio.NewWriterSize(w, 1<<20)}
	lsn, epoch, err := a.db.WriteSnapshot(sw, func(lsn, epoch uint64, size int64) error {
		w.Header().Set(store.HeaderLSN, strconv.FormatUint(lsn, 10))
		w.WriteHeader(http.StatusOK)
		return WriteFrame(sw.w, uvarints(frameSnapBegin, lsn, epoch, uint64(size)))
	})
	if err == nil {
		err = sw.finish()
	}
	if err != nil {
		a.log.Warn("snapshot stream failed", "err", err)
		return
	}
	a.log.Info("snapshot sent", "lsn", lsn, "epoch", epoch, "bytes", sw.total, "to", r.RemoteAddr)
}

// snapWriter cuts what bbolt writes into data frames.
type snapWriter struct {
	w     *bufio.Writer
	buf   []byte
	total uint64
	crc   uint32
}

const snapChunk = 256 << 10

func (s *snapWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), snapChunk-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) == snapChunk {
			if err := s.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (s *snapWriter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	s.total += uint64(len(s.buf))
	s.crc = crc32Update(s.crc, s.buf)
	err := WriteFrame(s.w, append([]byte{frameSnapData}, s.buf...))
	s.buf = s.buf[:0]
	return err
}

func (s *snapWriter) finish() error {
	if err := s.flush(); err != nil {
		return err
	}
	end := uvarints(frameSnapEnd, s.total)
	end = append(end, byte(s.crc>>24), byte(s.crc>>16), byte(s.crc>>8), byte(s.crc))
	if err := WriteFrame(s.w, end); err != nil {
		return err
	}
	return s.w.Flush()
}

var _ io.Writer = (*snapWriter)(nil)
