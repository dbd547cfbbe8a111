package app

import (
	"context"
	"slices"

	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/posts"
)

// Edge purges (stage 6). Public pages carry Surrogate-Key headers
// (post-<id>, author-<handle>, home, tag-<t>, search; see postKeys and the
// page handlers), and the edge keeps them up to s-maxage. So that a writer
// sees their change through the edge at once, every write that changes a
// public page tells the edges which keys and URLs it made stale, through a
// Purger. A page that shows a post always carries its post-<id> key, so
// that key alone reaches every stored page the post was on; the feed keys
// (home, author, tag, search) are for pages it now joins.

// Purge names what a change made stale at the edges. The Purger sends it
// as the edge's purge message (pkg/cdn/purge, which owns the format).
type Purge struct {
	URLs []string `json:"urls,omitempty"`
	Keys []string `json:"keys,omitempty"`
}

// Purger tells the edges what a write made stale. Purge is called after the
// write, on the request's path: it must return at once, and a purge that
// cannot be sent is dropped (the edge's s-maxage bounds how stale the page
// stays), never failing the write.
type Purger interface {
	Purge(ctx context.Context, p Purge)
}

// WithPurges returns s with the writes of posts, comments and the follow
// graph purging what they changed at the edges. The worker role wraps its
// services too, since its thumbnails and comment counts change pages.
// Wrap outside WithCache, so that an edge's refill after the purge does not
// find the app's cache tier still holding the old value.
func WithPurges(s Services, p Purger) Services {
	if p == nil {
		return s
	}
	s.Posts = &purgingPosts{Posts: s.Posts, p: p}
	s.Comments = &purgingComments{Comments: s.Comments, p: p}
	s.Accounts = &purgingAccounts{Accounts: s.Accounts, p: p}
	return s
}

// postPurge is what a change to post p makes stale: its page, every page
// that shows it (they carry its key), and the feeds it may have joined.
func postPurge(p posts.Post, feeds bool) Purge {
	pg := Purge{URLs: []string{"/p/" + p.ID}, Keys: []string{"post-" + p.ID}}
	if !feeds {
		return pg
	}
	if p.Author != "" {
		pg.Keys = append(pg.Keys, "author-"+p.Author)
		pg.URLs = append(pg.URLs, "/u/"+p.Author)
	}
	pg.Keys = append(pg.Keys, "home", "search")
	for _, t := range p.Tags {
		if k := "tag-" + t; !slices.Contains(pg.Keys, k) {
			pg.Keys = append(pg.Keys, k)
		}
	}
	return pg
}

type purgingPosts struct {
	Posts
	p Purger
}

func (s *purgingPosts) Create(ctx context.Context, d posts.Draft) (posts.Post, error) {
	p, err := s.Posts.Create(ctx, d)
	if err == nil && p.Published {
		s.p.Purge(ctx, postPurge(p, true))
	}
	return p, err
}

func (s *purgingPosts) Update(ctx context.Context, id string, patch posts.Patch) (posts.Post, error) {
	p, err := s.Posts.Update(ctx, id, patch)
	if err == nil {
		// Feeds too: it may have been published, or have gained a tag.
		s.p.Purge(ctx, postPurge(p, true))
	}
	return p, err
}

func (s *purgingPosts) SetThumb(ctx context.Context, id, image, thumb string) (posts.Post, error) {
	p, err := s.Posts.SetThumb(ctx, id, image, thumb)
	if err == nil {
		s.p.Purge(ctx, postPurge(posts.Post{ID: id}, false))
	}
	return p, err
}

func (s *purgingPosts) SetComments(ctx context.Context, id string, n int) error {
	err := s.Posts.SetComments(ctx, id, n)
	if err == nil {
		s.p.Purge(ctx, postPurge(posts.Post{ID: id}, false))
	}
	return err
}

func (s *purgingPosts) Delete(ctx context.Context, id string) error {
	// Read first: the author and tags name the feeds it leaves.
	old, gerr := s.Posts.Get(ctx, id)
	err := s.Posts.Delete(ctx, id)
	if err == nil {
		if gerr != nil {
			old = posts.Post{ID: id}
		}
		s.p.Purge(ctx, postPurge(old, old.Published))
	}
	return err
}

type purgingComments struct {
	Comments
	p Purger
}

func (s *purgingComments) Create(ctx context.Context, postID, authorID, author, body string) (comments.Comment, error) {
	c, err := s.Comments.Create(ctx, postID, authorID, author, body)
	if err == nil {
		s.p.Purge(ctx, postPurge(posts.Post{ID: postID}, false))
	}
	return c, err
}

type purgingAccounts struct {
	Accounts
	p Purger
}

func (s *purgingAccounts) Follow(ctx context.Context, follower, followee string) error {
	err := s.Accounts.Follow(ctx, follower, followee)
	if err == nil {
		s.purgeProfiles(ctx, follower, followee)
	}
	return err
}

func (s *purgingAccounts) Unfollow(ctx context.Context, follower, followee string) error {
	err := s.Accounts.Unfollow(ctx, follower, followee)
	if err == nil {
		s.purgeProfiles(ctx, follower, followee)
	}
	return err
}

// purgeProfiles purges the author pages of users, whose follower and
// following counts changed.
func (s *purgingAccounts) purgeProfiles(ctx context.Context, ids ...string) {
	var pg Purge
	for _, id := range ids {
		u, err := s.Accounts.User(ctx, id)
		if err != nil {
			continue
		}
		pg.Keys = append(pg.Keys, "author-"+u.Handle)
		pg.URLs = append(pg.URLs, "/u/"+u.Handle)
	}
	if len(pg.Keys) > 0 {
		s.p.Purge(ctx, pg)
	}
}
