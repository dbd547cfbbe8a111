package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// The replica's side of replication: find the primary, stream its log from
// the last applied LSN, apply entries in batches (each batch one bbolt
// commit), and ack after each. A stream that breaks, or a frame that fails
// its checksum, ends the connection; the replica reconnects and resumes
// from its last applied LSN, which is durable. When the primary answers 410
// the replica bootstraps from a snapshot.

// errNeedSnapshot is how stream tells follow to bootstrap.
var errNeedSnapshot = errors.New("replica needs a snapshot")

// follow starts following (stopping a previous follower first).
func (r *replication) follow(why string) {
	r.stopFollowing()
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	r.mu.Lock()
	r.followCancel, r.followDone = cancel, done
	r.noteLocked("replica: " + why)
	r.mu.Unlock()
	go func() {
		defer close(done)
		r.followLoop(ctx)
	}()
}

func (r *replication) stopFollowing() {
	r.mu.Lock()
	cancel, done := r.followCancel, r.followDone
	r.followCancel, r.followDone = nil, nil
	r.following.Connected = false
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// target returns the primary to follow: with failover, the node this one
// last granted the lease; else the node the Peers mark primary.
func (r *replication) target() (name, addr string) {
	if r.s.cfg.Failover {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.primaryName, r.primaryAddr
	}
	if r.s.cfg.Peers == nil {
		return "", ""
	}
	for _, n := range r.s.cfg.Peers.StoreNodes() {
		if n.Primary && n.Name != r.s.cfg.NodeName {
			return n.Name, n.Addr
		}
	}
	return "", ""
}

func (r *replication) followLoop(ctx context.Context) {
	backoff := 50 * time.Millisecond
	var authLogged time.Time // a refused credential is logged every refusalLogEvery, not every try
	for ctx.Err() == nil {
		name, addr := r.target()
		if name == "" || addr == "" || name == r.s.cfg.NodeName {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		err := r.stream(ctx, name, addr)
		if errors.Is(err, errNeedSnapshot) {
			r.log.Info("replica bootstrapping from a snapshot", "primary", name, "why", err)
			err = r.bootstrap(ctx, name, addr)
			if err == nil {
				backoff = 50 * time.Millisecond
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.following.Connected = false
		r.following.Reconnects++
		if err != nil {
			r.following.LastError = err.Error()
		}
		changed := r.leaderCh
		r.mu.Unlock()
		if errors.Is(err, store.ErrUnauthorized) && time.Since(authLogged) >= refusalLogEvery {
			authLogged = time.Now()
			r.log.Error("the primary refused this node's store credential: its --cluster-key differs from the primary's", "primary", name, "err", err)
		}
		r.log.Debug("replication stream ended, reconnecting", "primary", name, "err", err, "in", backoff)
		// A new primary is followed at once, not after the back-off the
		// dead one ran up.
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
			backoff = min(2*backoff, 500*time.Millisecond)
		case <-changed:
			backoff = 50 * time.Millisecond
		}
		t.Stop()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// stream follows the primary at addr until the stream ends.
func (r *replication) stream(ctx context.Context, name, addr string) error {
	db := r.s.DB()
	last := db.LSN()
	prevEpoch, _, err := db.EntryEpoch(last)
	if err != nil {
		return err
	}
	// With failover, a new primary (heard in a lease message) ends this
	// stream at once, also while it is still being set up: a paused old
	// primary's kernel takes the connection and nobody answers, and the
	// handshake would otherwise hold the replica for its deadline.
	var changed chan struct{}
	if r.s.cfg.Failover {
		r.mu.Lock()
		changed = r.leaderCh
		moved := r.primaryName != name
		r.mu.Unlock()
		if moved {
			return fmt.Errorf("the primary moved from %s before connecting", name)
		}
	}
	conn, err := r.dialPeer(ctx, addr)
	if err != nil {
		return fmt.Errorf("dial primary %s: %w", name, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	streaming := make(chan struct{})
	defer close(streaming)
	go func() {
		select {
		case <-changed: // nil without failover: never
			conn.Close()
		case <-streaming:
		}
	}()
	q := url.Values{}
	q.Set("from", strconv.FormatUint(last+1, 10))
	q.Set("prev_epoch", strconv.FormatUint(prevEpoch, 10))
	q.Set("epoch", strconv.FormatUint(db.Epoch(), 10))
	q.Set("node", r.s.cfg.NodeName)
	q.Set("addr", r.s.Addr())
	req, err := http.NewRequest(http.MethodGet, r.s.peerURL(addr, pathReplicate+"?"+q.Encode()), nil)
	if err != nil {
		return err
	}
	r.s.authorizePeer(req)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("ask primary %s: %w", name, err)
	}
	br := bufio.NewReaderSize(conn, 1<<20)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fmt.Errorf("ask primary %s: %w", name, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusGone:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%w: %s", errNeedSnapshot, body)
	default:
		return fmt.Errorf("primary %s: %w", name, peerAnswer(resp))
	}
	pe, _ := strconv.ParseUint(resp.Header.Get(store.HeaderEpoch), 10, 64)
	if pe < db.Epoch() {
		return fmt.Errorf("primary %s is at epoch %d, older than %d: refusing a deposed primary: %w", name, pe, db.Epoch(), store.ErrStaleEpoch)
	}
	if err := db.SetEpoch(pe); err != nil {
		return err
	}
	r.mu.Lock()
	if !r.s.cfg.Failover {
		r.setLeaderLocked(name, addr)
	}
	moved := r.primaryName != name
	if !moved {
		r.following.Connected, r.following.Primary, r.following.LastError = true, name, ""
	}
	r.mu.Unlock()
	if moved {
		return fmt.Errorf("the primary moved from %s while connecting", name)
	}
	r.log.Info("replica following", "primary", name, "from", last+1, "epoch", pe)

	bw := bufio.NewWriter(conn)
	sendAck := func() error {
		l := db.LSN()
		// bbolt fsyncs every commit, so what is applied is durable.
		if err := WriteFrame(bw, uvarints(frameAck, l, l)); err != nil {
			return err
		}
		return bw.Flush()
	}
	if err := sendAck(); err != nil {
		return err
	}
	var batch []boltdb.Entry
	timeout := 3*r.s.cfg.HeartbeatInterval + time.Second
	for {
		_ = conn.SetDeadline(time.Now().Add(timeout))
		f, err := ReadFrame(br)
		if err != nil {
			return fmt.Errorf("read from primary %s: %w", name, err)
		}
		switch f[0] {
		case frameEntry:
			e, err := boltdb.DecodeEntry(f[1:])
			if err != nil {
				return fmt.Errorf("frame from primary %s: %w", name, err)
			}
			batch = append(batch, e)
			if len(batch) < shipBatch && nextIsEntry(br) {
				continue // another entry is already here: group it into one commit
			}
			if err := db.ApplyEntries(batch, pe); err != nil {
				return err
			}
			batch = batch[:0]
			r.mu.Lock()
			r.following.Applied = db.LSN()
			r.following.PrimaryLSN = max(r.following.PrimaryLSN, db.LSN())
			r.following.Lag = r.following.PrimaryLSN - db.LSN()
			r.mu.Unlock()
			if err := sendAck(); err != nil {
				return err
			}
		case frameHeartbeat:
			v, _, err := parseUvarints(f[1:], 2)
			if err != nil {
				return err
			}
			if v[1] < db.Epoch() {
				return fmt.Errorf("heartbeat of epoch %d from %s, store is at %d: %w", v[1], name, db.Epoch(), store.ErrStaleEpoch)
			}
			r.mu.Lock()
			r.following.PrimaryLSN = v[0]
			r.following.Applied = db.LSN()
			r.following.Lag = v[0] - min(v[0], db.LSN())
			r.mu.Unlock()
			if err := sendAck(); err != nil {
				return err
			}
		case frameStop:
			return fmt.Errorf("%w: primary %s: %s", errNeedSnapshot, name, f[1:])
		default:
			return fmt.Errorf("%w: unexpected frame type %q", ErrBadFrame, f[0])
		}
	}
}

// nextIsEntry reports whether a whole entry frame is already buffered, so
// that it can join the current batch without waiting on the network.
// Anything else (a partial frame, a heartbeat, nothing) ends the batch: an
// entry must never wait for a frame that may not come.
func nextIsEntry(br *bufio.Reader) bool {
	if br.Buffered() < 9 {
		return false
	}
	head, err := br.Peek(9)
	if err != nil || head[8] != frameEntry {
		return false
	}
	return br.Buffered() >= 8+int(binary.BigEndian.Uint32(head[:4]))
}

// bootstrap downloads a snapshot from the primary into a temporary file
// beside the database, checks every frame and the whole-file checksum, and
// installs it (DB.Restore renames it over the file).
func (r *replication) bootstrap(ctx context.Context, name, addr string) error {
	db := r.s.DB()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.s.peerURL(addr, pathSnapshot), nil)
	if err != nil {
		return err
	}
	r.s.authorizePeer(req)
	resp, err := r.peerHTTP.Do(req)
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", name, err)
	}
	defer resp.Body.Close()
	if err := peerAnswer(resp); err != nil {
		return fmt.Errorf("snapshot from %s: %w", name, err)
	}
	tmp := filepath.Join(filepath.Dir(db.Path()), ".snapshot-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp) // after a successful Restore it is gone already
	lsn, err := receiveSnapshot(bufio.NewReaderSize(resp.Body, 1<<20), f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapshot from %s: %w", name, err)
	}
	if err := db.Restore(tmp); err != nil {
		return err
	}
	r.mu.Lock()
	r.following.Snapshots++
	r.mu.Unlock()
	r.log.Info("replica installed snapshot", "primary", name, "lsn", lsn, "epoch", db.Epoch())
	return nil
}

// receiveSnapshot copies the snapshot frames from r into f, checked, and
// syncs f. It returns the snapshot's LSN.
func receiveSnapshot(r io.Reader, f *os.File) (uint64, error) {
	first, err := ReadFrame(r)
	if err != nil {
		return 0, err
	}
	if first[0] != frameSnapBegin {
		return 0, fmt.Errorf("%w: snapshot starts with %q", ErrBadFrame, first[0])
	}
	head, _, err := parseUvarints(first[1:], 3)
	if err != nil {
		return 0, err
	}
	var total uint64
	var crc uint32
	for {
		p, err := ReadFrame(r)
		if err != nil {
			return 0, err
		}
		switch p[0] {
		case frameSnapData:
			if _, err := f.Write(p[1:]); err != nil {
				return 0, err
			}
			total += uint64(len(p) - 1)
			crc = crc32Update(crc, p[1:])
		case frameSnapEnd:
			v, rest, err := parseUvarints(p[1:], 1)
			if err != nil || len(rest) != 4 {
				return 0, fmt.Errorf("%w: snapshot end", ErrBadFrame)
			}
			if v[0] != total || binary.BigEndian.Uint32(rest) != crc || total != head[2] {
				return 0, fmt.Errorf("%w: snapshot of %d bytes (crc %08x), sender says %d (crc %08x)", ErrBadFrame, total, crc, v[0], binary.BigEndian.Uint32(rest))
			}
			return head[0], f.Sync()
		default:
			return 0, fmt.Errorf("%w: unexpected frame %q in a snapshot", ErrBadFrame, p[0])
		}
	}
}
