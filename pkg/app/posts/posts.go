// Package posts is the blog's posts service: posts with their Markdown
// rendered at write time, tags, the published feed, per-author and per-tag
// indexes, and the counters shown beside a post (views, comments). It owns
// the buckets whose names start with "posts.".
package posts

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/internal/kv"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// Buckets owned by the service. Feed keys are ids made when a post is
// published, so the feed is in publication order, newest last.
const (
	bucketPosts  = "posts.byid"     // post id -> record
	bucketFeed   = "posts.feed"     // feed key -> post id (published only)
	bucketAuthor = "posts.byauthor" // author id/feed key -> post id (published only)
	bucketDrafts = "posts.drafts"   // author id/post id -> "" (unpublished)
	bucketTags   = "posts.bytag"    // tag/feed key -> post id (published only)
)

// Input limits, in bytes unless said otherwise.
const (
	MaxTitle = 200
	// MaxBody keeps a post record (source plus rendered HTML) well under the
	// store's value limit.
	MaxBody = 60_000
	// MaxTags is a count; MaxTag is the length of one tag.
	MaxTags = 8
	MaxTag  = 32
	// viewRing is how many recent view-job ids a post remembers so that a
	// view job delivered twice counts once.
	viewRing = 64
	// casTries bounds the retries of a compare-and-set update under contention.
	casTries = 40
)

// Post is a blog post.
type Post struct {
	ID        string    `json:"id"`
	AuthorID  string    `json:"author_id"`
	Author    string    `json:"author"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	HTML      string    `json:"html"`
	Excerpt   string    `json:"excerpt"`
	Tags      []string  `json:"tags"`
	Published bool      `json:"published"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// PublishedAt is when the post was last published; zero for drafts.
	PublishedAt time.Time `json:"published_at,omitzero"`
	Views       int64     `json:"views"`
	Comments    int       `json:"comments"`
	// Image and Thumb name media objects ("<hash>.<ext>"), empty when none.
	Image string `json:"image,omitempty"`
	Thumb string `json:"thumb,omitempty"`
}

type record struct {
	Post
	FeedKey  string   `json:"feed_key,omitempty"`
	ViewJobs []string `json:"view_jobs,omitempty"`
}

// Draft is the input of Create.
type Draft struct {
	AuthorID, Author string
	Title, Body      string
	Tags             []string
	Published        bool
}

// Patch is the input of Update; nil fields are left as they are.
type Patch struct {
	Title     *string
	Body      *string
	Tags      *[]string
	Published *bool
	Image     *string
	Thumb     *string
}

// Change is a write of a post as a caller's outbox for a Change
// (svc.WithOutbox[posts.Change]) is given it: the post as stored before
// the write and as it will be stored after, both from the attempt whose
// transaction the outbox's operations join. The write's compare-and-set
// holds Before for that transaction, so a caller that decides what the
// write did from it (a draft became published) decides from the stored
// previous state, never from a read of its own that a concurrent writer
// may have made stale. Before is the zero Post for a Create, After the
// zero Post for a Delete. Every write that gives the outbox for a Post its
// post gives the outbox for a Change its change, and only one of the two
// can be in a context.
type Change struct {
	Before, After Post
}

// Service implements the posts service over a store.
type Service struct {
	st store.Store
	md *Markdown
	// now is the clock; tests may replace it to make feeds deterministic.
	now func() time.Time
}

// New returns the service.
func New(st store.Store) *Service {
	return &Service{st: st, md: NewMarkdown(), now: time.Now}
}

// NormalizeTag lower-cases a tag and reports whether it is usable.
func NormalizeTag(t string) (string, bool) {
	t = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "#")))
	if t == "" || len(t) > MaxTag {
		return "", false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", false
		}
	}
	return t, true
}

func normalizeTags(in []string) ([]string, error) {
	out := []string{}
	for _, t := range in {
		n, ok := NormalizeTag(t)
		if !ok {
			return nil, svc.Invalid("tags", "%q is not a tag: use up to %d letters, digits, - or _", t, MaxTag)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) > MaxTags {
		return nil, svc.Invalid("tags", "at most %d tags", MaxTags)
	}
	return out, nil
}

func validate(p *Post) error {
	p.Title = strings.TrimSpace(p.Title)
	switch {
	case p.Title == "":
		return svc.Invalid("title", "is required")
	case len(p.Title) > MaxTitle:
		return svc.Invalid("title", "must be at most %d bytes", MaxTitle)
	case !utf8.ValidString(p.Title) || !utf8.ValidString(p.Body):
		return svc.Invalid("body", "must be valid UTF-8")
	case strings.TrimSpace(p.Body) == "":
		return svc.Invalid("body", "is required")
	case len(p.Body) > MaxBody:
		return &svc.FieldError{Field: "body", Msg: fmt.Sprintf("must be at most %d bytes", MaxBody), Err: svc.ErrTooLarge}
	}
	return nil
}

// Create stores a new post. Errors: *svc.FieldError for bad input. The
// caller's outbox for a Post (svc.WithOutbox) commits with it.
func (s *Service) Create(ctx context.Context, d Draft) (Post, error) {
	now := s.now().UTC().Truncate(time.Second)
	tags, err := normalizeTags(d.Tags)
	if err != nil {
		return Post{}, err
	}
	rec := record{Post: Post{
		ID: ids.At(s.now()), AuthorID: d.AuthorID, Author: d.Author,
		Title: d.Title, Body: d.Body, Tags: tags, Published: d.Published,
		CreatedAt: now, UpdatedAt: now,
	}}
	if err := validate(&rec.Post); err != nil {
		return Post{}, err
	}
	if err := s.render(&rec); err != nil {
		return Post{}, err
	}
	if rec.Published {
		rec.FeedKey, rec.PublishedAt = ids.At(s.now()), now
	}
	ops := append([]store.Op{store.Put(bucketPosts, rec.ID, kv.MustJSON(rec))}, indexOps(rec, true)...)
	ops = append(ops, svc.Outbox(ctx, rec.Post)...)
	ops = append(ops, svc.Outbox(ctx, Change{After: rec.Post})...)
	if _, err := s.st.Txn(ctx, ops...); err != nil {
		return Post{}, fmt.Errorf("posts: create: %w", err)
	}
	return rec.Post, nil
}

func (s *Service) render(rec *record) error {
	h, err := s.md.Render(rec.Body)
	if err != nil {
		return fmt.Errorf("posts: %w", err)
	}
	rec.HTML, rec.Excerpt = h, plainText(rec.Body, 240)
	return nil
}

// indexOps returns the index entries of rec, as puts or as deletes.
func indexOps(rec record, put bool) []store.Op {
	op := func(bucket, key, val string) store.Op {
		if put {
			return store.Put(bucket, key, []byte(val))
		}
		return store.Delete(bucket, key)
	}
	if !rec.Published {
		return []store.Op{op(bucketDrafts, kv.Join(rec.AuthorID, rec.ID), "")}
	}
	ops := []store.Op{
		op(bucketFeed, rec.FeedKey, rec.ID),
		op(bucketAuthor, kv.Join(rec.AuthorID, rec.FeedKey), rec.ID),
	}
	for _, t := range rec.Tags {
		ops = append(ops, op(bucketTags, kv.Join(t, rec.FeedKey), rec.ID))
	}
	return ops
}

// Get returns a post, or svc.ErrNotFound.
func (s *Service) Get(ctx context.Context, id string) (Post, error) {
	rec, _, err := s.load(ctx, id)
	return rec.Post, err
}

func (s *Service) load(ctx context.Context, id string) (record, []byte, error) {
	if !ids.Valid(id) {
		return record{}, nil, fmt.Errorf("post %q: %w", id, svc.ErrNotFound)
	}
	var rec record
	raw, err := kv.GetJSON(ctx, s.st, bucketPosts, id, &rec)
	if errors.Is(err, store.ErrNotFound) {
		return record{}, nil, fmt.Errorf("post %q: %w", id, svc.ErrNotFound)
	}
	if err != nil {
		return record{}, nil, fmt.Errorf("posts: get: %w", err)
	}
	return rec, raw, nil
}

// Many returns the posts with the given ids, in that order, skipping any
// that no longer exist.
func (s *Service) Many(ctx context.Context, idList []string) ([]Post, error) {
	out := make([]Post, 0, len(idList))
	for _, id := range idList {
		p, err := s.Get(ctx, id)
		if errors.Is(err, svc.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// update applies change to a post with compare-and-set, retrying when a
// concurrent writer (a view, an edit) got there first, and keeps the
// indexes in step in the same transaction. The caller's outbox for a Post
// is given the post as changed, and commits with it.
func (s *Service) update(ctx context.Context, id string, change func(*record) (bool, error)) (Post, error) {
	for try := 0; try < casTries; try++ {
		rec, raw, err := s.load(ctx, id)
		if err != nil {
			return Post{}, err
		}
		old := rec
		old.Tags = slices.Clone(rec.Tags)
		changed, err := change(&rec)
		if err != nil || !changed {
			return rec.Post, err
		}
		ops := []store.Op{store.IfEqual(bucketPosts, id, raw), store.Put(bucketPosts, id, kv.MustJSON(rec))}
		if old.Published != rec.Published || old.FeedKey != rec.FeedKey || !slices.Equal(old.Tags, rec.Tags) {
			ops = append(ops, indexOps(old, false)...)
			ops = append(ops, indexOps(rec, true)...)
		}
		ops = append(ops, svc.Outbox(ctx, rec.Post)...)
		ops = append(ops, svc.Outbox(ctx, Change{Before: old.Post, After: rec.Post})...)
		_, err = s.st.Txn(ctx, ops...)
		if errors.Is(err, store.ErrConditionFailed) {
			if err := backoff(ctx, try); err != nil {
				return Post{}, err
			}
			continue
		}
		if err != nil {
			return Post{}, fmt.Errorf("posts: update: %w", err)
		}
		return rec.Post, nil
	}
	return Post{}, fmt.Errorf("posts: update %s: %w", id, svc.ErrConflict)
}

// backoff waits a random time that grows with the number of tries, so
// writers racing on one hot post (views) spread out instead of colliding
// in every group commit again.
func backoff(ctx context.Context, try int) error {
	d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(try, 5)))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("posts: update: %w", ctx.Err())
	}
}

// Update changes a post's fields. The caller checks who may edit.
func (s *Service) Update(ctx context.Context, id string, p Patch) (Post, error) {
	var tags []string
	if p.Tags != nil {
		var err error
		if tags, err = normalizeTags(*p.Tags); err != nil {
			return Post{}, err
		}
	}
	return s.update(ctx, id, func(rec *record) (bool, error) {
		if p.Title != nil {
			rec.Title = *p.Title
		}
		if p.Body != nil {
			rec.Body = *p.Body
		}
		if p.Tags != nil {
			rec.Tags = tags
		}
		if p.Image != nil {
			rec.Image = *p.Image
		}
		if p.Thumb != nil {
			rec.Thumb = *p.Thumb
		}
		if err := validate(&rec.Post); err != nil {
			return false, err
		}
		if p.Body != nil {
			if err := s.render(rec); err != nil {
				return false, err
			}
		}
		now := s.now().UTC().Truncate(time.Second)
		if p.Published != nil && *p.Published != rec.Published {
			rec.Published = *p.Published
			rec.FeedKey, rec.PublishedAt = "", time.Time{}
			if rec.Published {
				rec.FeedKey, rec.PublishedAt = ids.At(s.now()), now
			}
		}
		rec.UpdatedAt = now
		return true, nil
	})
}

// SetThumb records the thumbnail of a post's image, unless the image has
// changed since the thumbnail was asked for (a late job must not attach an
// old thumbnail to a new image).
func (s *Service) SetThumb(ctx context.Context, id, image, thumb string) (Post, error) {
	return s.update(ctx, id, func(rec *record) (bool, error) {
		if rec.Image != image || rec.Thumb == thumb {
			return false, nil
		}
		rec.Thumb = thumb
		return true, nil
	})
}

// AddView counts one view of a post. jobID identifies the view: the same
// jobID counted twice (a redelivered job) counts once.
func (s *Service) AddView(ctx context.Context, id, jobID string) error {
	_, err := s.update(ctx, id, func(rec *record) (bool, error) {
		if slices.Contains(rec.ViewJobs, jobID) {
			return false, nil
		}
		rec.Views++
		rec.ViewJobs = append(rec.ViewJobs, jobID)
		if len(rec.ViewJobs) > viewRing {
			rec.ViewJobs = rec.ViewJobs[len(rec.ViewJobs)-viewRing:]
		}
		return true, nil
	})
	return err
}

// SetComments records the number of comments on a post (a count, not a
// delta, so setting it twice is harmless).
func (s *Service) SetComments(ctx context.Context, id string, n int) error {
	_, err := s.update(ctx, id, func(rec *record) (bool, error) {
		if rec.Comments == n {
			return false, nil
		}
		rec.Comments = n
		return true, nil
	})
	return err
}

// Delete removes a post and its index entries; deleting twice is not an
// error. The caller's outbox for a Post is given the post as it was, and
// commits with its removal (nothing when it was already gone).
func (s *Service) Delete(ctx context.Context, id string) error {
	for try := 0; try < casTries; try++ {
		rec, raw, err := s.load(ctx, id)
		if errors.Is(err, svc.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ops := append([]store.Op{store.IfEqual(bucketPosts, id, raw), store.Delete(bucketPosts, id)}, indexOps(rec, false)...)
		ops = append(ops, svc.Outbox(ctx, rec.Post)...)
		ops = append(ops, svc.Outbox(ctx, Change{Before: rec.Post})...)
		_, err = s.st.Txn(ctx, ops...)
		if errors.Is(err, store.ErrConditionFailed) {
			if err := backoff(ctx, try); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("posts: delete: %w", err)
		}
		return nil
	}
	return fmt.Errorf("posts: delete %s: %w", id, svc.ErrConflict)
}

// Feed returns page (1-based) of published posts, newest first.
func (s *Service) Feed(ctx context.Context, page, size int) ([]Post, bool, error) {
	return s.list(ctx, bucketFeed, "", page, size)
}

// ByAuthor returns page of an author's published posts, newest first.
func (s *Service) ByAuthor(ctx context.Context, authorID string, page, size int) ([]Post, bool, error) {
	return s.list(ctx, bucketAuthor, authorID+"/", page, size)
}

// ByTag returns page of the published posts with tag, newest first.
func (s *Service) ByTag(ctx context.Context, tag string, page, size int) ([]Post, bool, error) {
	tag, ok := NormalizeTag(tag)
	if !ok {
		return nil, false, nil
	}
	return s.list(ctx, bucketTags, tag+"/", page, size)
}

// Drafts returns an author's unpublished posts, newest first (at most limit).
func (s *Service) Drafts(ctx context.Context, authorID string, limit int) ([]Post, error) {
	pairs, _, err := kv.Page(ctx, s.st, bucketDrafts, authorID+"/", 0, limit, true)
	if err != nil {
		return nil, fmt.Errorf("posts: drafts: %w", err)
	}
	idList := make([]string, len(pairs))
	for i, p := range pairs {
		idList[i] = strings.TrimPrefix(p.Key, authorID+"/")
	}
	return s.Many(ctx, idList)
}

func (s *Service) list(ctx context.Context, bucket, prefix string, page, size int) ([]Post, bool, error) {
	if page < 1 {
		page = 1
	}
	pairs, more, err := kv.Page(ctx, s.st, bucket, prefix, (page-1)*size, size, true)
	if err != nil {
		return nil, false, fmt.Errorf("posts: list %s: %w", bucket, err)
	}
	idList := make([]string, len(pairs))
	for i, p := range pairs {
		idList[i] = string(p.Value)
	}
	posts, err := s.Many(ctx, idList)
	return posts, more, err
}
