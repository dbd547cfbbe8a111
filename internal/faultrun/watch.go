package faultrun

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/scalestack/scalestack/pkg/store/server"
)

// replStatus reads the replication section of a store node's /v1/status.
func replStatus(ctx context.Context, n *Node) (server.ReplicationStatus, error) {
	storeAddr := n.Store()
	var out struct {
		Replication *server.ReplicationStatus `json:"replication"`
	}
	if err := getJSON(ctx, n.storeToken, "http://"+storeAddr+"/v1/status", &out); err != nil {
		return server.ReplicationStatus{}, err
	}
	if out.Replication == nil {
		return server.ReplicationStatus{}, fmt.Errorf("%s: no replication status", storeAddr)
	}
	return *out.Replication, nil
}

// checksum reads a store node's /v1/checksum: the CRC-32C of its data and
// the LSN it is at.
func checksum(ctx context.Context, n *Node) (uint32, uint64, error) {
	var out struct {
		CRC uint32 `json:"crc32c"`
		LSN uint64 `json:"lsn"`
	}
	err := getJSON(ctx, n.storeToken, "http://"+n.Store()+"/v1/checksum", &out)
	return out.CRC, out.LSN, err
}

// getJSON reads u, presenting the store's token (derived from the
// cluster key: the store port refuses requests without it).
func getJSON(ctx context.Context, token, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := statusClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// epochWatch polls every store node's /v1/status every 100 ms, one
// goroutine per node (a paused or cut-off node holds its own poll for the
// client's timeout without delaying the others), and keeps when each epoch
// was first seen and which nodes said they were primary in it. A failover
// shows as a new epoch, whichever node it is seen on; a second failover
// after a fault as a second one.
type epochWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	first   map[uint64]time.Time                // epoch -> first poll (its send time) that saw it
	primary map[uint64]map[string]bool          // epoch -> nodes that said primary in it
	current map[string]server.ReplicationStatus // node -> its last answer
}

func watchEpochs(nodes []*Node) *epochWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &epochWatch{cancel: cancel, first: map[uint64]time.Time{}, primary: map[uint64]map[string]bool{},
		current: map[string]server.ReplicationStatus{}}
	for _, n := range nodes {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for ctx.Err() == nil {
				sent := time.Now()
				st, err := replStatus(ctx, n)
				w.mu.Lock()
				if err == nil {
					if _, ok := w.first[st.Epoch]; !ok {
						w.first[st.Epoch] = sent
					}
					if st.Role == server.RolePrimary {
						if w.primary[st.Epoch] == nil {
							w.primary[st.Epoch] = map[string]bool{}
						}
						w.primary[st.Epoch][n.Name] = true
					}
					w.current[n.Name] = st
				} else {
					delete(w.current, n.Name)
				}
				w.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	return w
}

func (w *epochWatch) stop() {
	w.cancel()
	w.wg.Wait()
}

// epochsIn returns the epochs first seen in [from, to), in order.
func (w *epochWatch) epochsIn(from, to time.Time) []uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []uint64
	for e, at := range w.first {
		if !at.Before(from) && at.Before(to) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// primaries returns, per epoch, the nodes that said primary in it: more
// than one node in an epoch would be two primaries at once.
func (w *epochWatch) primaries() map[uint64][]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[uint64][]string{}
	for e, nodes := range w.primary {
		for n := range nodes {
			out[e] = append(out[e], n)
		}
		sort.Strings(out[e])
	}
	return out
}

// now describes the primary as the last polls saw it: "db-2@3", or "none".
func (w *epochWatch) now() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var names []string
	for n, st := range w.current {
		if st.Role == server.RolePrimary {
			names = append(names, fmt.Sprintf("%s@%d", n, st.Epoch))
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return fmt.Sprint(names)
}
