package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/scalestack/scalestack/pkg/app/cachetier"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The cache tier (--cache=on, stage 5) is a layer around the posts and
// comments services: reads go through the cache (cache-aside), and every
// write invalidates what it changed, with the scheme of docs/cache-tier.md.
// What is cached, under which keys (the tier adds its prefix):
//
//	post:<id>                            a post (posts.Post as JSON)
//	feed:<home|author|tag>:<scope>:<size>:<page>   the ids on a feed page, and whether more follow
//	frag:<home|author|tag>:<scope>:<size>:<page>   the rendered HTML of that page's post list
//	comments:<post id>                   a post's comments (JSON)
//
// Only pages 1..CachePages of each feed are cached, so a write knows every
// feed and fragment key it may have changed. View counts are the one thing
// written without invalidation: a cached post shows its views as of when it
// was filled, at most the tier's TTL old, so that reading a post (which
// counts a view) does not evict it.

// CacheOptions says which pages the cached services cache.
type CacheOptions struct {
	// PageSize is the feed page size the app serves (Config.PageSize);
	// feeds asked for with another size are not cached.
	PageSize int
	// Pages is the number of pages of each feed cached, from the first.
	Pages int
	// Group is the store group the posts and comments are kept in, the
	// tier's own (cachetier.Config.Group): a write's LSN in that group is
	// what its tombstones carry. Empty: the default group (stages 1-9).
	Group string
}

// WithCache returns s with its posts and comments read through the cache
// tier and invalidated on every write. The worker role of stage 8 must
// build its services with it too (with the app's options), so that the
// writes its jobs make (comment counts, thumbnails) invalidate the cache.
func WithCache(s Services, t *cachetier.Tier, opts CacheOptions) Services {
	keys := cacheKeys{size: opts.PageSize, pages: opts.Pages}
	s.Posts = &cachedPosts{Posts: s.Posts, tier: t, keys: keys, group: opts.Group}
	s.Comments = &cachedComments{Comments: s.Comments, tier: t, group: opts.Group}
	return s
}

// cacheKeys names cache keys.
type cacheKeys struct{ size, pages int }

func postKey(id string) string { return "post:" + id }

func commentsKey(postID string) string { return "comments:" + postID }

// Feeds: home (scope ""), author (scope: author id), tag (scope: tag).
const (
	feedHome   = "home"
	feedAuthor = "author"
	feedTag    = "tag"
)

func (k cacheKeys) feed(kind, scope string, page int) string {
	return "feed:" + kind + ":" + scope + ":" + strconv.Itoa(k.size) + ":" + strconv.Itoa(page)
}

func (k cacheKeys) frag(kind, scope string, page int) string {
	return "frag:" + kind + ":" + scope + ":" + strconv.Itoa(k.size) + ":" + strconv.Itoa(page)
}

// cached reports whether page of a feed of size is cached.
func (k cacheKeys) cached(page, size int) bool {
	return size == k.size && page >= 1 && page <= k.pages
}

// affected returns every key a change to posts, in the states given (before
// and after), may have made stale: the posts themselves and, for each state
// that was published, every cached page and fragment of the home feed, the
// author's feed and the feeds of its tags. A post's card shows its title,
// counts and thumbnail, so any change to a published post touches them.
func (k cacheKeys) affected(states ...posts.Post) []string {
	var out []string
	seen := map[string]bool{}
	add := func(key string) {
		if !seen[key] {
			seen[key] = true
			out = append(out, key)
		}
	}
	feeds := func(kind, scope string) {
		for page := 1; page <= k.pages; page++ {
			add(k.feed(kind, scope, page))
			add(k.frag(kind, scope, page))
		}
	}
	for _, p := range states {
		if p.ID != "" {
			add(postKey(p.ID))
		}
		if !p.Published {
			continue
		}
		feeds(feedHome, "")
		if p.AuthorID != "" {
			feeds(feedAuthor, p.AuthorID)
		}
		for _, t := range p.Tags {
			feeds(feedTag, t)
		}
	}
	return out
}

// writeTrace gives a write its own store trace, to learn the LSN it
// committed at in group (the store group written), and passes what it
// recorded on to the request's trace.
func writeTrace(ctx context.Context, group string) (context.Context, func() uint64) {
	parent := store.TraceFrom(ctx)
	tr := &store.Trace{}
	return store.WithTrace(ctx, tr), func() uint64 {
		node, seen := tr.Seen()
		if parent != nil && node != "" {
			parent.RecordAll(node, seen)
		}
		return seen.Get(group)
	}
}

// committedMaybe reports whether a write that returned err may have
// committed: validation errors and "not found" never do; anything else
// (a timeout, a lost answer) might have.
func committedMaybe(err error) bool {
	var fe *svc.FieldError
	return err == nil || !(errors.As(err, &fe) || errors.Is(err, svc.ErrNotFound) || errors.Is(err, svc.ErrForbidden))
}

// cachedPosts is the posts service read through the cache.
type cachedPosts struct {
	Posts
	tier  *cachetier.Tier
	keys  cacheKeys
	group string // CacheOptions.Group
}

// Get reads a post through the cache.
func (c *cachedPosts) Get(ctx context.Context, id string) (posts.Post, error) {
	if !ids.Valid(id) {
		return c.Posts.Get(ctx, id)
	}
	raw, _, err := c.tier.Fetch(ctx, postKey(id), func(ctx context.Context) ([]byte, error) {
		p, err := c.Posts.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		return json.Marshal(p)
	})
	if err != nil {
		return posts.Post{}, err
	}
	var p posts.Post
	if err := json.Unmarshal(raw, &p); err != nil {
		return c.Posts.Get(ctx, id)
	}
	return p, nil
}

// Many reads posts through the cache, one round trip per cache node.
func (c *cachedPosts) Many(ctx context.Context, idList []string) ([]posts.Post, error) {
	valid := make([]string, 0, len(idList))
	keys := make([]string, 0, len(idList))
	for _, id := range idList {
		if ids.Valid(id) {
			valid = append(valid, id)
			keys = append(keys, postKey(id))
		}
	}
	vals, err := c.tier.FetchMany(ctx, keys, func(ctx context.Context, i int) ([]byte, error) {
		p, err := c.Posts.Get(ctx, valid[i])
		if errors.Is(err, svc.ErrNotFound) {
			return nil, nil // deleted since it was listed: skip it, as Posts.Many does
		}
		if err != nil {
			return nil, err
		}
		return json.Marshal(p)
	})
	if err != nil {
		return nil, err
	}
	out := make([]posts.Post, 0, len(vals))
	for i, raw := range vals {
		if raw == nil {
			continue
		}
		var p posts.Post
		if err := json.Unmarshal(raw, &p); err != nil {
			if p, err = c.Posts.Get(ctx, valid[i]); err != nil {
				continue
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Feed reads a page of the home feed through the cache.
func (c *cachedPosts) Feed(ctx context.Context, page, size int) ([]posts.Post, bool, error) {
	return c.list(ctx, feedHome, "", page, size, func(ctx context.Context) ([]posts.Post, bool, error) {
		return c.Posts.Feed(ctx, page, size)
	})
}

// ByAuthor reads a page of an author's feed through the cache.
func (c *cachedPosts) ByAuthor(ctx context.Context, authorID string, page, size int) ([]posts.Post, bool, error) {
	return c.list(ctx, feedAuthor, authorID, page, size, func(ctx context.Context) ([]posts.Post, bool, error) {
		return c.Posts.ByAuthor(ctx, authorID, page, size)
	})
}

// ByTag reads a page of a tag's feed through the cache.
func (c *cachedPosts) ByTag(ctx context.Context, tag string, page, size int) ([]posts.Post, bool, error) {
	t, ok := posts.NormalizeTag(tag)
	if !ok {
		return c.Posts.ByTag(ctx, tag, page, size)
	}
	return c.list(ctx, feedTag, t, page, size, func(ctx context.Context) ([]posts.Post, bool, error) {
		return c.Posts.ByTag(ctx, t, page, size)
	})
}

// list caches a feed page as the ids on it; the posts themselves come from
// their own keys, so an edit to a post does not change the feed's entry.
func (c *cachedPosts) list(ctx context.Context, kind, scope string, page, size int, load func(context.Context) ([]posts.Post, bool, error)) ([]posts.Post, bool, error) {
	if page < 1 {
		page = 1
	}
	if !c.keys.cached(page, size) {
		c.tier.Uncached(ctx, "feed")
		return load(ctx)
	}
	// If this reader runs the load, it has the posts already and need not
	// read them again; readers that shared the load get the ids only.
	var loaded []posts.Post
	var loadedMore, ran bool
	raw, _, err := c.tier.Fetch(ctx, c.keys.feed(kind, scope, page), func(ctx context.Context) ([]byte, error) {
		ps, more, err := load(ctx)
		if err != nil {
			return nil, err
		}
		loaded, loadedMore, ran = ps, more, true
		return encodeFeed(ps, more), nil
	})
	if err != nil {
		return nil, false, err
	}
	if ran {
		return loaded, loadedMore, nil
	}
	idList, more := decodeFeed(raw)
	ps, err := c.Many(ctx, idList)
	return ps, more, err
}

// encodeFeed writes "1" or "0" (more pages follow or not), then one id per line.
func encodeFeed(ps []posts.Post, more bool) []byte {
	var b bytes.Buffer
	if more {
		b.WriteByte('1')
	} else {
		b.WriteByte('0')
	}
	for _, p := range ps {
		b.WriteByte('\n')
		b.WriteString(p.ID)
	}
	return b.Bytes()
}

func decodeFeed(raw []byte) (idList []string, more bool) {
	s := string(raw)
	if s == "" {
		return nil, false
	}
	more = s[0] == '1'
	if len(s) > 2 {
		idList = strings.Split(s[2:], "\n")
	}
	return idList, more
}

// change runs a write to post id and invalidates what it changed, looking
// at the post before (from the cache; a state the post had) and after.
func (c *cachedPosts) change(ctx context.Context, id string, write func(context.Context) (posts.Post, error)) (posts.Post, error) {
	// The look at the post before is not part of what the request served.
	old, _ := c.Get(cachetier.WithTrace(ctx, nil), id)
	wctx, lsn := writeTrace(ctx, c.group)
	p, err := write(wctx)
	at := lsn()
	if committedMaybe(err) {
		c.tier.Invalidate(ctx, at, append(c.keys.affected(old, p), postKey(id))...)
	}
	return p, err
}

// Create stores a post and, if it is published, invalidates the feeds it
// joins.
func (c *cachedPosts) Create(ctx context.Context, d posts.Draft) (posts.Post, error) {
	wctx, lsn := writeTrace(ctx, c.group)
	p, err := c.Posts.Create(wctx, d)
	at := lsn()
	if err != nil && committedMaybe(err) {
		// The outcome is unknown: invalidate what the draft would have joined.
		tags := []string{}
		for _, t := range d.Tags {
			if n, ok := posts.NormalizeTag(t); ok {
				tags = append(tags, n)
			}
		}
		p = posts.Post{AuthorID: d.AuthorID, Tags: tags, Published: d.Published}
	}
	if committedMaybe(err) {
		c.tier.Invalidate(ctx, at, c.keys.affected(p)...)
	}
	return p, err
}

// Update changes a post and invalidates it and the feeds it was or is on.
func (c *cachedPosts) Update(ctx context.Context, id string, patch posts.Patch) (posts.Post, error) {
	return c.change(ctx, id, func(ctx context.Context) (posts.Post, error) { return c.Posts.Update(ctx, id, patch) })
}

// SetThumb records a thumbnail and invalidates the post and its cards.
func (c *cachedPosts) SetThumb(ctx context.Context, id, image, thumb string) (posts.Post, error) {
	return c.change(ctx, id, func(ctx context.Context) (posts.Post, error) { return c.Posts.SetThumb(ctx, id, image, thumb) })
}

// SetComments records a comment count and invalidates the post and its cards.
func (c *cachedPosts) SetComments(ctx context.Context, id string, n int) error {
	_, err := c.change(ctx, id, func(ctx context.Context) (posts.Post, error) {
		if err := c.Posts.SetComments(ctx, id, n); err != nil {
			return posts.Post{}, err
		}
		return posts.Post{}, nil
	})
	return err
}

// Delete removes a post and invalidates it and the feeds it was on.
func (c *cachedPosts) Delete(ctx context.Context, id string) error {
	_, err := c.change(ctx, id, func(ctx context.Context) (posts.Post, error) {
		return posts.Post{}, c.Posts.Delete(ctx, id)
	})
	return err
}

// cachedComments is the comments service with each post's list cached.
type cachedComments struct {
	Comments
	tier  *cachetier.Tier
	group string // CacheOptions.Group
}

// List reads a post's comments through the cache.
func (c *cachedComments) List(ctx context.Context, postID string) ([]comments.Comment, error) {
	if !ids.Valid(postID) {
		return c.Comments.List(ctx, postID)
	}
	raw, _, err := c.tier.Fetch(ctx, commentsKey(postID), func(ctx context.Context) ([]byte, error) {
		cs, err := c.Comments.List(ctx, postID)
		if err != nil {
			return nil, err
		}
		return json.Marshal(cs)
	})
	if err != nil {
		return nil, err
	}
	var cs []comments.Comment
	if err := json.Unmarshal(raw, &cs); err != nil {
		return c.Comments.List(ctx, postID)
	}
	return cs, nil
}

// Create adds a comment and invalidates the post's list.
func (c *cachedComments) Create(ctx context.Context, postID, authorID, author, body string) (comments.Comment, error) {
	wctx, lsn := writeTrace(ctx, c.group)
	cm, err := c.Comments.Create(wctx, postID, authorID, author, body)
	at := lsn()
	if committedMaybe(err) {
		c.tier.Invalidate(ctx, at, commentsKey(postID))
	}
	return cm, err
}

// DeleteForPost removes a post's comments and invalidates its list.
func (c *cachedComments) DeleteForPost(ctx context.Context, postID string) error {
	wctx, lsn := writeTrace(ctx, c.group)
	err := c.Comments.DeleteForPost(wctx, postID)
	c.tier.Invalidate(ctx, lsn(), commentsKey(postID))
	return err
}
