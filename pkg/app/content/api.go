// Package content is stage 10's content service over the services' wire
// (pkg/app/svc/rpc, docs/services.md): posts, comments and media, served by
// a content node over the content store group, and the clients the gateway
// calls them with in place of the in-process services (NewPosts,
// NewComments, NewMedia satisfy app.Posts, app.Comments and app.Media).
//
// The service tells the others what changed through its own event outbox,
// in the transaction of each change (docs/events.md): post.changed with
// every create, edit, thumbnail and delete of a post, post.published the
// first time a post becomes visible, comment.added with each comment. Its
// own follow-ups of those events, which were the app's jobs (the comment
// count, the thumbnail), are Handlers, which the content node subscribes.
//
// The package imports the services it serves and the wire, never the app
// (pkg/app): the app imports it.
package content

import (
	"context"
	"errors"
	"fmt"

	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// Name is the service's name on the wire: /v1/content/{method}. It is also
// the Source of its events and the prefix of its outbox bucket
// (content.outbox).
const Name = "content"

// Deps is what the content service is made of: the three domain services
// over the content group's store, and the service's event outbox over the
// same store (svc.OutboxOf(st, content.Name)), so that an event commits in
// the transaction of the change it tells of.
type Deps struct {
	Posts    *posts.Service
	Comments *comments.Service
	Media    *media.Service
	Outbox   svc.EventOutbox
	// EventsCommitted, if not nil, is called (without waiting on it) after a
	// write that put events into the outbox has committed: the node sets it
	// to its events publisher's Nudge, so the events leave at once. Nil:
	// the publisher's sweep finds them.
	EventsCommitted func()
}

// Limits of the wire beside the services' own.
const (
	// MaxPageSize bounds the size of a page of posts (post-feed,
	// post-by-author, post-by-tag) and post-drafts' limit: the app's own
	// page size is 1 to 100.
	MaxPageSize = 100
	// MaxMany bounds the ids of one post-many (each is a read).
	MaxMany = 200
	// MaxMediaBody bounds a media-put body: an image of media.MaxBytes in
	// base64, with room for the rest of the JSON. It is also about the
	// largest media-get answer, which a client's rpc.Config.MaxAnswerBytes
	// (16 MiB by default) must leave room for.
	MaxMediaBody = (media.MaxBytes+2)/3*4 + 4<<10
)

// The methods, one per method of app.Posts, app.Comments and app.Media.
//
// Reads are idempotent, and so are the writes that set rather than add: a
// view keyed by its job id, a comment count, a thumbnail (content-addressed,
// and set only while the post shows its image), a delete, an image
// (content-addressed: the same bytes are one image). Creating a post or a
// comment is not: a second call makes a second one, so the client never
// sends one again once it may have reached an instance (the caller gets
// rpc.ErrOutcomeUnknown). Nor is an edit: sent again after a later edit
// of the same post, it would undo that edit.
var (
	// PostCreateMethod is posts.Service.Create.
	PostCreateMethod = rpc.Method[PostCreateRequest, posts.Post]{Name: "post-create"}
	// PostGetMethod is posts.Service.Get.
	PostGetMethod = rpc.Method[PostRequest, posts.Post]{Name: "post-get", Idempotent: true}
	// PostManyMethod is posts.Service.Many.
	PostManyMethod = rpc.Method[PostManyRequest, PostList]{Name: "post-many", Idempotent: true}
	// PostUpdateMethod is posts.Service.Update.
	PostUpdateMethod = rpc.Method[PostUpdateRequest, posts.Post]{Name: "post-update"}
	// PostSetThumbMethod is posts.Service.SetThumb.
	PostSetThumbMethod = rpc.Method[PostSetThumbRequest, posts.Post]{Name: "post-set-thumb", Idempotent: true}
	// PostAddViewMethod is posts.Service.AddView.
	PostAddViewMethod = rpc.Method[PostAddViewRequest, Done]{Name: "post-add-view", Idempotent: true}
	// PostSetCommentsMethod is posts.Service.SetComments.
	PostSetCommentsMethod = rpc.Method[PostSetCommentsRequest, Done]{Name: "post-set-comments", Idempotent: true}
	// PostDeleteMethod is posts.Service.Delete.
	PostDeleteMethod = rpc.Method[PostDeleteRequest, Done]{Name: "post-delete", Idempotent: true}
	// PostFeedMethod is posts.Service.Feed.
	PostFeedMethod = rpc.Method[PageRequest, PostList]{Name: "post-feed", Idempotent: true}
	// PostByAuthorMethod is posts.Service.ByAuthor.
	PostByAuthorMethod = rpc.Method[ByAuthorRequest, PostList]{Name: "post-by-author", Idempotent: true}
	// PostByTagMethod is posts.Service.ByTag.
	PostByTagMethod = rpc.Method[ByTagRequest, PostList]{Name: "post-by-tag", Idempotent: true}
	// PostDraftsMethod is posts.Service.Drafts.
	PostDraftsMethod = rpc.Method[DraftsRequest, PostList]{Name: "post-drafts", Idempotent: true}

	// CommentCreateMethod is comments.Service.Create.
	CommentCreateMethod = rpc.Method[CommentCreateRequest, comments.Comment]{Name: "comment-create"}
	// CommentListMethod is comments.Service.List.
	CommentListMethod = rpc.Method[CommentsRequest, CommentList]{Name: "comment-list", Idempotent: true}
	// CommentCountMethod is comments.Service.Count.
	CommentCountMethod = rpc.Method[CommentsRequest, Count]{Name: "comment-count", Idempotent: true}
	// CommentDeleteForPostMethod is comments.Service.DeleteForPost.
	CommentDeleteForPostMethod = rpc.Method[CommentsRequest, Done]{Name: "comment-delete-for-post", Idempotent: true}

	// MediaPutMethod is media.Service.Put.
	MediaPutMethod = rpc.Method[MediaPutRequest, media.Meta]{Name: "media-put", Idempotent: true, MaxBodyBytes: MaxMediaBody}
	// MediaGetMethod is media.Service.Get.
	MediaGetMethod = rpc.Method[MediaRequest, MediaObject]{Name: "media-get", Idempotent: true}
	// MediaThumbnailMethod is media.Service.Thumbnail.
	MediaThumbnailMethod = rpc.Method[MediaRequest, media.Meta]{Name: "media-thumbnail", Idempotent: true}
)

// Done is the answer of a write that returns nothing: {}.
type Done struct{}

// PostCreateRequest is posts.Draft on the wire.
type PostCreateRequest struct {
	AuthorID  string   `json:"author_id"`
	Author    string   `json:"author"`
	Title     string   `json:"title"`
	Body      string   `json:"body"`
	Tags      []string `json:"tags,omitempty"`
	Published bool     `json:"published"`
}

// PostRequest names one post.
type PostRequest struct {
	ID string `json:"id"`
}

// PostManyRequest names posts, at most MaxMany.
type PostManyRequest struct {
	IDs []string `json:"ids"`
}

// PostList is a list of posts; More says a page of a listing has a next.
type PostList struct {
	Posts []posts.Post `json:"posts"`
	More  bool         `json:"more,omitempty"`
}

// PostUpdateRequest is posts.Patch on the wire: an absent (or null)
// member leaves the field as it is.
type PostUpdateRequest struct {
	ID        string    `json:"id"`
	Title     *string   `json:"title,omitempty"`
	Body      *string   `json:"body,omitempty"`
	Tags      *[]string `json:"tags,omitempty"`
	Published *bool     `json:"published,omitempty"`
	Image     *string   `json:"image,omitempty"`
	Thumb     *string   `json:"thumb,omitempty"`
	// AuthorID, when set, is the user making the change: the service
	// refuses it unless they wrote the post (403 forbidden; 404 for
	// another's draft, which they may not know of), as the gateway checks
	// before it calls. The Go client leaves it empty: app.Posts has no
	// place for it, and the gateway has checked.
	AuthorID string `json:"author_id,omitempty"`
}

// PostDeleteRequest names the post to delete; AuthorID is as in
// PostUpdateRequest.
type PostDeleteRequest struct {
	ID       string `json:"id"`
	AuthorID string `json:"author_id,omitempty"`
}

// PostSetThumbRequest attaches the thumbnail Thumb of the image Image.
type PostSetThumbRequest struct {
	ID    string `json:"id"`
	Image string `json:"image"`
	Thumb string `json:"thumb"`
}

// PostAddViewRequest counts the view JobID of a post.
type PostAddViewRequest struct {
	ID    string `json:"id"`
	JobID string `json:"job_id"`
}

// PostSetCommentsRequest sets the comment count of a post.
type PostSetCommentsRequest struct {
	ID    string `json:"id"`
	Count int    `json:"count"`
}

// PageRequest asks for a page (1-based; less than 1 is the first) of Size
// posts (1 to MaxPageSize).
type PageRequest struct {
	Page int `json:"page"`
	Size int `json:"size"`
}

// ByAuthorRequest asks for a page of an author's published posts.
type ByAuthorRequest struct {
	AuthorID string `json:"author_id"`
	Page     int    `json:"page"`
	Size     int    `json:"size"`
}

// ByTagRequest asks for a page of the published posts with a tag.
type ByTagRequest struct {
	Tag  string `json:"tag"`
	Page int    `json:"page"`
	Size int    `json:"size"`
}

// DraftsRequest asks for an author's drafts, newest first, at most Limit
// (1 to MaxPageSize).
type DraftsRequest struct {
	AuthorID string `json:"author_id"`
	Limit    int    `json:"limit"`
}

// CommentCreateRequest adds a comment: the post must exist.
type CommentCreateRequest struct {
	PostID   string `json:"post_id"`
	AuthorID string `json:"author_id"`
	Author   string `json:"author"`
	Body     string `json:"body"`
}

// CommentsRequest names the post whose comments are listed, counted or
// deleted.
type CommentsRequest struct {
	PostID string `json:"post_id"`
}

// CommentList is comment-list's answer, oldest first.
type CommentList struct {
	Comments []comments.Comment `json:"comments"`
}

// Count is comment-count's answer.
type Count struct {
	Count int `json:"count"`
}

// MediaPutRequest carries an image, base64 in JSON (encoding/json's []byte).
type MediaPutRequest struct {
	Data []byte `json:"data"`
}

// MediaRequest names an image.
type MediaRequest struct {
	Name string `json:"name"`
}

// MediaObject is media-get's answer: the image's metadata and bytes
// (base64 in JSON).
type MediaObject struct {
	Meta media.Meta `json:"meta"`
	Data []byte     `json:"data"`
}

// Register serves d's methods on server (ServerConfig.Service Name; the
// table's codes, no codes of its own). The writes that change a post or
// add a comment commit their events with them (events.go).
func Register(server *rpc.Server, d Deps) {
	registerPosts(server, d)
	registerComments(server, d)
	registerMedia(server, d)
}

func registerPosts(server *rpc.Server, d Deps) {
	rpc.Handle(server, PostCreateMethod, func(ctx context.Context, req PostCreateRequest) (posts.Post, error) {
		ctx, wrote := withPostEvents(ctx, d)
		p, err := d.Posts.Create(ctx, posts.Draft{AuthorID: req.AuthorID, Author: req.Author,
			Title: req.Title, Body: req.Body, Tags: req.Tags, Published: req.Published})
		d.committed(err, wrote)
		return p, err
	})
	rpc.Handle(server, PostGetMethod, func(ctx context.Context, req PostRequest) (posts.Post, error) {
		return d.Posts.Get(ctx, req.ID)
	})
	rpc.Handle(server, PostManyMethod, func(ctx context.Context, req PostManyRequest) (PostList, error) {
		if len(req.IDs) > MaxMany {
			return PostList{}, svc.Invalid("ids", "at most %d ids at once", MaxMany)
		}
		ps, err := d.Posts.Many(ctx, req.IDs)
		return postList(ps, false, err)
	})
	rpc.Handle(server, PostUpdateMethod, func(ctx context.Context, req PostUpdateRequest) (posts.Post, error) {
		if err := d.checkAuthor(ctx, req.ID, req.AuthorID); err != nil {
			return posts.Post{}, err
		}
		ctx, wrote := withPostEvents(ctx, d)
		p, err := d.Posts.Update(ctx, req.ID, posts.Patch{Title: req.Title, Body: req.Body, Tags: req.Tags,
			Published: req.Published, Image: req.Image, Thumb: req.Thumb})
		d.committed(err, wrote)
		return p, err
	})
	rpc.Handle(server, PostSetThumbMethod, func(ctx context.Context, req PostSetThumbRequest) (posts.Post, error) {
		ctx, wrote := withPostEvents(ctx, d)
		p, err := d.Posts.SetThumb(ctx, req.ID, req.Image, req.Thumb)
		d.committed(err, wrote)
		return p, err
	})
	rpc.Handle(server, PostAddViewMethod, func(ctx context.Context, req PostAddViewRequest) (Done, error) {
		if req.JobID == "" {
			return Done{}, svc.Invalid("job_id", "is required: a view is counted once per job id")
		}
		return Done{}, d.Posts.AddView(ctx, req.ID, req.JobID)
	})
	rpc.Handle(server, PostSetCommentsMethod, func(ctx context.Context, req PostSetCommentsRequest) (Done, error) {
		if req.Count < 0 {
			return Done{}, svc.Invalid("count", "must not be negative")
		}
		return Done{}, d.Posts.SetComments(ctx, req.ID, req.Count)
	})
	rpc.Handle(server, PostDeleteMethod, func(ctx context.Context, req PostDeleteRequest) (Done, error) {
		if req.AuthorID != "" {
			p, err := d.Posts.Get(ctx, req.ID)
			if errors.Is(err, svc.ErrNotFound) {
				return Done{}, nil // deleting twice is not an error
			}
			if err != nil {
				return Done{}, err
			}
			if err := authorOf(p, req.AuthorID); err != nil {
				return Done{}, err
			}
		}
		ctx, wrote := withPostEvents(ctx, d)
		err := d.Posts.Delete(ctx, req.ID)
		d.committed(err, wrote)
		return Done{}, err
	})
	rpc.Handle(server, PostFeedMethod, func(ctx context.Context, req PageRequest) (PostList, error) {
		if err := checkSize("size", req.Size); err != nil {
			return PostList{}, err
		}
		return postList(d.Posts.Feed(ctx, req.Page, req.Size))
	})
	rpc.Handle(server, PostByAuthorMethod, func(ctx context.Context, req ByAuthorRequest) (PostList, error) {
		if err := checkSize("size", req.Size); err != nil {
			return PostList{}, err
		}
		return postList(d.Posts.ByAuthor(ctx, req.AuthorID, req.Page, req.Size))
	})
	rpc.Handle(server, PostByTagMethod, func(ctx context.Context, req ByTagRequest) (PostList, error) {
		if err := checkSize("size", req.Size); err != nil {
			return PostList{}, err
		}
		return postList(d.Posts.ByTag(ctx, req.Tag, req.Page, req.Size))
	})
	rpc.Handle(server, PostDraftsMethod, func(ctx context.Context, req DraftsRequest) (PostList, error) {
		if err := checkSize("limit", req.Limit); err != nil {
			return PostList{}, err
		}
		ps, err := d.Posts.Drafts(ctx, req.AuthorID, req.Limit)
		return postList(ps, false, err)
	})
}

func registerComments(server *rpc.Server, d Deps) {
	rpc.Handle(server, CommentCreateMethod, func(ctx context.Context, req CommentCreateRequest) (comments.Comment, error) {
		// The service that keeps both makes sure a comment has its post:
		// its count and its event would otherwise be about nothing.
		if _, err := d.Posts.Get(ctx, req.PostID); err != nil {
			return comments.Comment{}, err
		}
		ctx, wrote := withCommentEvents(ctx, d)
		c, err := d.Comments.Create(ctx, req.PostID, req.AuthorID, req.Author, req.Body)
		d.committed(err, wrote)
		return c, err
	})
	rpc.Handle(server, CommentListMethod, func(ctx context.Context, req CommentsRequest) (CommentList, error) {
		cs, err := d.Comments.List(ctx, req.PostID)
		if cs == nil {
			cs = []comments.Comment{}
		}
		return CommentList{Comments: cs}, err
	})
	rpc.Handle(server, CommentCountMethod, func(ctx context.Context, req CommentsRequest) (Count, error) {
		n, err := d.Comments.Count(ctx, req.PostID)
		return Count{Count: n}, err
	})
	rpc.Handle(server, CommentDeleteForPostMethod, func(ctx context.Context, req CommentsRequest) (Done, error) {
		if req.PostID == "" {
			// An empty prefix would be every post's comments.
			return Done{}, svc.Invalid("post_id", "is required")
		}
		return Done{}, d.Comments.DeleteForPost(ctx, req.PostID)
	})
}

func registerMedia(server *rpc.Server, d Deps) {
	rpc.Handle(server, MediaPutMethod, func(ctx context.Context, req MediaPutRequest) (media.Meta, error) {
		if len(req.Data) == 0 {
			return media.Meta{}, svc.Invalid("data", "is required: the image's bytes, base64")
		}
		return d.Media.Put(ctx, req.Data)
	})
	rpc.Handle(server, MediaGetMethod, func(ctx context.Context, req MediaRequest) (MediaObject, error) {
		m, data, err := d.Media.Get(ctx, req.Name)
		return MediaObject{Meta: m, Data: data}, err
	})
	rpc.Handle(server, MediaThumbnailMethod, func(ctx context.Context, req MediaRequest) (media.Meta, error) {
		return d.Media.Thumbnail(ctx, req.Name)
	})
}

// checkAuthor refuses a change of post id by a user other than its
// author (authorOf). An empty author checks nothing. A post's author never
// changes, so the check holds for the write that follows it.
func (d Deps) checkAuthor(ctx context.Context, id, authorID string) error {
	if authorID == "" {
		return nil
	}
	p, err := d.Posts.Get(ctx, id)
	if err != nil {
		return err
	}
	return authorOf(p, authorID)
}

// authorOf refuses a change of p by a user other than its author:
// forbidden, or not found for another's draft (which they may not know of).
func authorOf(p posts.Post, authorID string) error {
	switch {
	case p.AuthorID == authorID:
		return nil
	case !p.Published:
		return fmt.Errorf("post %q: %w", p.ID, svc.ErrNotFound)
	}
	return fmt.Errorf("post %q is another author's: %w", p.ID, svc.ErrForbidden)
}

func checkSize(field string, n int) error {
	if n < 1 || n > MaxPageSize {
		return svc.Invalid(field, "%d: want 1 to %d", n, MaxPageSize)
	}
	return nil
}

func postList(ps []posts.Post, more bool, err error) (PostList, error) {
	if ps == nil {
		ps = []posts.Post{}
	}
	return PostList{Posts: ps, More: more}, err
}

// mediaTooLarge is the client's own refusal of an image the service would
// refuse, before sending megabytes for nothing.
func mediaTooLarge(n int) error {
	return &svc.FieldError{Field: "image", Err: svc.ErrTooLarge,
		Msg: fmt.Sprintf("is %d bytes; at most %d MB", n, media.MaxBytes>>20)}
}
