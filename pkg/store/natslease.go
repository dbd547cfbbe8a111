package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// NATSLease is a LeaseStore in a JetStream key-value bucket, replicated
// across the NATS servers of the cluster.
type NATSLease struct {
	js      jetstream.JetStream
	bucket  string
	key     string
	servers func() int
	// stepDown asks the bucket's stream leader to hand leadership to
	// another server (queue.Conn.StepDown); nil skips it.
	stepDown func(ctx context.Context, stream string) error

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewNATSLease returns the lease of store group `group` in bucket
// "store_lease" of js. servers returns how many NATS servers the cluster
// has, for the bucket's replication (queue.Replicas); stepDown, when set,
// moves the bucket's leadership off the primary's own server.
func NewNATSLease(js jetstream.JetStream, group string, servers func() int, stepDown func(ctx context.Context, stream string) error) *NATSLease {
	if group == "" {
		group = "default"
	}
	return &NATSLease{js: js, bucket: "store_lease", key: group, servers: servers, stepDown: stepDown}
}

func (l *NATSLease) replicas() int {
	n := 1
	if l.servers != nil {
		n = l.servers()
	}
	return max(1, min(3, n))
}

func (l *NATSLease) store(ctx context.Context) (jetstream.KeyValue, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kv != nil {
		return l.kv, nil
	}
	kv, err := l.js.KeyValue(ctx, l.bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = l.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: l.bucket, Description: "store primary lease", History: 1,
			Storage: jetstream.FileStorage, Replicas: l.replicas(),
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = l.js.KeyValue(ctx, l.bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	l.kv = kv
	return kv, nil
}

// Get implements LeaseStore.
func (l *NATSLease) Get(ctx context.Context) (LeaseRecord, uint64, error) {
	kv, err := l.store(ctx)
	if err != nil {
		return LeaseRecord{}, 0, err
	}
	e, err := kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return LeaseRecord{}, 0, ErrNoLease
	}
	if err != nil {
		return LeaseRecord{}, 0, fmt.Errorf("lease get: %w", err)
	}
	var rec LeaseRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return LeaseRecord{}, 0, fmt.Errorf("lease get: %w", err)
	}
	return rec, e.Revision(), nil
}

// Create implements LeaseStore.
func (l *NATSLease) Create(ctx context.Context, rec LeaseRecord) (uint64, error) {
	kv, err := l.store(ctx)
	if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(rec)
	rev, err := kv.Create(ctx, l.key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrLeaseTaken
	}
	if err != nil {
		return 0, fmt.Errorf("lease create: %w", err)
	}
	return rev, nil
}

// Update implements LeaseStore.
func (l *NATSLease) Update(ctx context.Context, rec LeaseRecord, rev uint64) (uint64, error) {
	kv, err := l.store(ctx)
	if err != nil {
		return 0, err
	}
	b, _ := json.Marshal(rec)
	n, err := kv.Update(ctx, l.key, b, rev)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)) {
			return 0, ErrLeaseTaken
		}
		return 0, fmt.Errorf("lease update: %w", err)
	}
	return n, nil
}

// Maintain scales the bucket up to the replicas the cluster can hold now
// (the first store node creates it while it is alone) and, when the
// bucket's leader is this node, asks it to step down: if the primary's
// process dies with the leadership, NATS takes 4-9s to elect a new leader
// and the lease cannot change hands until then (DESIGN.md).
func (l *NATSLease) Maintain(ctx context.Context, self string) error {
	if _, err := l.store(ctx); err != nil {
		return err
	}
	stream := "KV_" + l.bucket
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("lease maintain: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("lease maintain: %w", err)
	}
	if want := l.replicas(); info.Config.Replicas < want {
		cfg := info.Config
		cfg.Replicas = want
		if _, err := l.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("lease maintain: scale to %d replicas: %w", want, err)
		}
		return nil
	}
	if l.stepDown != nil && info.Cluster != nil && info.Cluster.Leader == self && len(info.Cluster.Replicas) > 0 {
		if err := l.stepDown(ctx, stream); err != nil {
			return fmt.Errorf("lease maintain: %w", err)
		}
	}
	return nil
}
