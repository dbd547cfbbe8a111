// Package notify is the blog's notifications service: per-user lists of
// events worth telling (a comment on your post, a new post by an author you
// follow). It owns the buckets whose names start with "notify.".
package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/store"
)

const bucketNotes = "notify.byuser" // user id/notification id -> Notification

// Kinds of notification.
const (
	KindComment = "comment" // someone commented on your post
	KindPost    = "post"    // an author you follow published a post
)

// MaxList is the most notifications a page shows.
const MaxList = 100

// Notification is one event for one user.
type Notification struct {
	// ID is time-ordered and chosen by the caller, so that adding the same
	// notification twice (a redelivered job) stores it once.
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Actor     string    `json:"actor"` // handle of who did it
	PostID    string    `json:"post_id"`
	PostTitle string    `json:"post_title"`
	CreatedAt time.Time `json:"created_at"`
}

// Service implements the notifications service over a store.
type Service struct{ st store.Store }

// New returns the service.
func New(st store.Store) *Service { return &Service{st: st} }

// Add stores n for each user in one transaction; it is idempotent by n.ID.
func (s *Service) Add(ctx context.Context, n Notification, userIDs ...string) error {
	if len(userIDs) == 0 {
		return nil
	}
	val := kv.MustJSON(n)
	for len(userIDs) > 0 {
		// Bounded transactions: an author with many followers fans out in steps.
		k := min(len(userIDs), 128)
		ops := make([]store.Op, k)
		for i, u := range userIDs[:k] {
			ops[i] = store.Put(bucketNotes, kv.Join(u, n.ID), val)
		}
		if _, err := s.st.Txn(ctx, ops...); err != nil {
			return fmt.Errorf("notify: add: %w", err)
		}
		userIDs = userIDs[k:]
	}
	return nil
}

// List returns a user's notifications, newest first.
func (s *Service) List(ctx context.Context, userID string, limit int) ([]Notification, error) {
	if limit <= 0 || limit > MaxList {
		limit = MaxList
	}
	pairs, _, err := kv.Page(ctx, s.st, bucketNotes, userID+"/", 0, limit, true)
	if err != nil {
		return nil, fmt.Errorf("notify: list: %w", err)
	}
	out := make([]Notification, 0, len(pairs))
	for _, p := range pairs {
		var n Notification
		if err := json.Unmarshal(p.Value, &n); err != nil {
			return nil, fmt.Errorf("notify: decode %s: %w", p.Key, err)
		}
		out = append(out, n)
	}
	return out, nil
}
