// Package comments is the blog's comments service: comments on posts, in the
// order they were written. It owns the buckets whose names start with
// "comments.".
package comments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

const bucketComments = "comments.bypost" // post id/comment id -> comment

// Input limits.
const (
	// MaxBody is the longest comment, in bytes.
	MaxBody = 4000
	// MaxList is the most comments one post page shows.
	MaxList = 500
)

// Comment is one comment on a post. Bodies are plain text (shown escaped).
type Comment struct {
	ID        string    `json:"id"`
	PostID    string    `json:"post_id"`
	AuthorID  string    `json:"author_id"`
	Author    string    `json:"author"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// Service implements the comments service over a store.
type Service struct{ st store.Store }

// New returns the service.
func New(st store.Store) *Service { return &Service{st: st} }

// Create adds a comment. The caller checks that the post exists. The
// caller's outbox for a Comment (svc.WithOutbox) commits with it.
func (s *Service) Create(ctx context.Context, postID, authorID, author, body string) (Comment, error) {
	body = strings.TrimSpace(body)
	switch {
	case body == "":
		return Comment{}, svc.Invalid("body", "is required")
	case len(body) > MaxBody:
		return Comment{}, &svc.FieldError{Field: "body", Msg: fmt.Sprintf("must be at most %d bytes", MaxBody), Err: svc.ErrTooLarge}
	case !utf8.ValidString(body):
		return Comment{}, svc.Invalid("body", "must be valid UTF-8")
	}
	c := Comment{ID: ids.New(), PostID: postID, AuthorID: authorID, Author: author, Body: body,
		CreatedAt: time.Now().UTC().Truncate(time.Second)}
	ops := append([]store.Op{store.Put(bucketComments, kv.Join(postID, c.ID), kv.MustJSON(c))}, svc.Outbox(ctx, c)...)
	if _, err := s.st.Txn(ctx, ops...); err != nil {
		return Comment{}, fmt.Errorf("comments: create: %w", err)
	}
	return c, nil
}

// List returns the comments of a post, oldest first (at most MaxList).
func (s *Service) List(ctx context.Context, postID string) ([]Comment, error) {
	pairs, _, err := kv.Page(ctx, s.st, bucketComments, postID+"/", 0, MaxList, false)
	if err != nil {
		return nil, fmt.Errorf("comments: list: %w", err)
	}
	out := make([]Comment, 0, len(pairs))
	for _, p := range pairs {
		var c Comment
		if err := json.Unmarshal(p.Value, &c); err != nil {
			return nil, fmt.Errorf("comments: decode %s: %w", p.Key, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Get returns one comment, or svc.ErrNotFound.
func (s *Service) Get(ctx context.Context, postID, id string) (Comment, error) {
	var c Comment
	_, err := kv.GetJSON(ctx, s.st, bucketComments, kv.Join(postID, id), &c)
	if errors.Is(err, store.ErrNotFound) {
		return Comment{}, fmt.Errorf("comment %q: %w", id, svc.ErrNotFound)
	}
	if err != nil {
		return Comment{}, fmt.Errorf("comments: get: %w", err)
	}
	return c, nil
}

// Count returns how many comments a post has.
func (s *Service) Count(ctx context.Context, postID string) (int, error) {
	n, err := kv.Count(ctx, s.st, bucketComments, postID+"/")
	if err != nil {
		return 0, fmt.Errorf("comments: count: %w", err)
	}
	return n, nil
}

// DeleteForPost removes every comment of a post (when the post is deleted).
func (s *Service) DeleteForPost(ctx context.Context, postID string) error {
	for {
		pairs, err := kv.Scan(ctx, s.st, bucketComments, store.ScanOptions{Prefix: postID + "/", Start: postID + "/", End: postID + "0", Limit: 100})
		if err != nil {
			return fmt.Errorf("comments: delete: %w", err)
		}
		if len(pairs) == 0 {
			return nil
		}
		ops := make([]store.Op, len(pairs))
		for i, p := range pairs {
			ops[i] = store.Delete(bucketComments, p.Key)
		}
		if _, err := s.st.Txn(ctx, ops...); err != nil {
			return fmt.Errorf("comments: delete: %w", err)
		}
	}
}
