package content

import (
	"context"

	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc/rpc"
)

// The clients the gateway calls the content service with, one per app
// interface (app.Posts, app.Comments, app.Media), over one rpc.Client of
// service Name. Their errors match what the service returned (svc's
// sentinels, *svc.FieldError), as the in-process services' do, or are the
// wire's (rpc.ErrUnavailable, rpc.ErrOutcomeUnknown, ...).
//
// An outbox the caller attaches to its context (svc.WithOutbox) does not
// travel: the service writes its own events, and the gateway no job.

// PostsClient is the posts service over the wire.
type PostsClient struct{ c *rpc.Client }

// NewPosts returns the posts service of c's content instances.
func NewPosts(c *rpc.Client) *PostsClient { return &PostsClient{c: c} }

// Create is posts.Service.Create.
func (p *PostsClient) Create(ctx context.Context, d posts.Draft) (posts.Post, error) {
	return rpc.Call(ctx, p.c, PostCreateMethod, PostCreateRequest{AuthorID: d.AuthorID, Author: d.Author,
		Title: d.Title, Body: d.Body, Tags: d.Tags, Published: d.Published})
}

// Get is posts.Service.Get.
func (p *PostsClient) Get(ctx context.Context, id string) (posts.Post, error) {
	return rpc.Call(ctx, p.c, PostGetMethod, PostRequest{ID: id})
}

// Many is posts.Service.Many; more than MaxMany ids take several calls.
func (p *PostsClient) Many(ctx context.Context, ids []string) ([]posts.Post, error) {
	out := make([]posts.Post, 0, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), MaxMany)
		l, err := rpc.Call(ctx, p.c, PostManyMethod, PostManyRequest{IDs: ids[:n]})
		if err != nil {
			return nil, err
		}
		out = append(out, l.Posts...)
		ids = ids[n:]
	}
	return out, nil
}

// Update is posts.Service.Update.
func (p *PostsClient) Update(ctx context.Context, id string, patch posts.Patch) (posts.Post, error) {
	return rpc.Call(ctx, p.c, PostUpdateMethod, PostUpdateRequest{ID: id, Title: patch.Title, Body: patch.Body,
		Tags: patch.Tags, Published: patch.Published, Image: patch.Image, Thumb: patch.Thumb})
}

// SetThumb is posts.Service.SetThumb.
func (p *PostsClient) SetThumb(ctx context.Context, id, image, thumb string) (posts.Post, error) {
	return rpc.Call(ctx, p.c, PostSetThumbMethod, PostSetThumbRequest{ID: id, Image: image, Thumb: thumb})
}

// AddView is posts.Service.AddView.
func (p *PostsClient) AddView(ctx context.Context, id, jobID string) error {
	_, err := rpc.Call(ctx, p.c, PostAddViewMethod, PostAddViewRequest{ID: id, JobID: jobID})
	return err
}

// SetComments is posts.Service.SetComments.
func (p *PostsClient) SetComments(ctx context.Context, id string, n int) error {
	_, err := rpc.Call(ctx, p.c, PostSetCommentsMethod, PostSetCommentsRequest{ID: id, Count: n})
	return err
}

// Delete is posts.Service.Delete.
func (p *PostsClient) Delete(ctx context.Context, id string) error {
	_, err := rpc.Call(ctx, p.c, PostDeleteMethod, PostDeleteRequest{ID: id})
	return err
}

// Feed is posts.Service.Feed.
func (p *PostsClient) Feed(ctx context.Context, page, size int) ([]posts.Post, bool, error) {
	l, err := rpc.Call(ctx, p.c, PostFeedMethod, PageRequest{Page: page, Size: size})
	return l.Posts, l.More, err
}

// ByAuthor is posts.Service.ByAuthor.
func (p *PostsClient) ByAuthor(ctx context.Context, authorID string, page, size int) ([]posts.Post, bool, error) {
	l, err := rpc.Call(ctx, p.c, PostByAuthorMethod, ByAuthorRequest{AuthorID: authorID, Page: page, Size: size})
	return l.Posts, l.More, err
}

// ByTag is posts.Service.ByTag.
func (p *PostsClient) ByTag(ctx context.Context, tag string, page, size int) ([]posts.Post, bool, error) {
	l, err := rpc.Call(ctx, p.c, PostByTagMethod, ByTagRequest{Tag: tag, Page: page, Size: size})
	return l.Posts, l.More, err
}

// Drafts is posts.Service.Drafts.
func (p *PostsClient) Drafts(ctx context.Context, authorID string, limit int) ([]posts.Post, error) {
	l, err := rpc.Call(ctx, p.c, PostDraftsMethod, DraftsRequest{AuthorID: authorID, Limit: limit})
	return l.Posts, err
}

// CommentsClient is the comments service over the wire.
type CommentsClient struct{ c *rpc.Client }

// NewComments returns the comments service of c's content instances.
func NewComments(c *rpc.Client) *CommentsClient { return &CommentsClient{c: c} }

// Create is comments.Service.Create; the post must exist (svc.ErrNotFound).
func (cc *CommentsClient) Create(ctx context.Context, postID, authorID, author, body string) (comments.Comment, error) {
	return rpc.Call(ctx, cc.c, CommentCreateMethod, CommentCreateRequest{PostID: postID, AuthorID: authorID, Author: author, Body: body})
}

// List is comments.Service.List.
func (cc *CommentsClient) List(ctx context.Context, postID string) ([]comments.Comment, error) {
	l, err := rpc.Call(ctx, cc.c, CommentListMethod, CommentsRequest{PostID: postID})
	return l.Comments, err
}

// Count is comments.Service.Count.
func (cc *CommentsClient) Count(ctx context.Context, postID string) (int, error) {
	n, err := rpc.Call(ctx, cc.c, CommentCountMethod, CommentsRequest{PostID: postID})
	return n.Count, err
}

// DeleteForPost is comments.Service.DeleteForPost.
func (cc *CommentsClient) DeleteForPost(ctx context.Context, postID string) error {
	_, err := rpc.Call(ctx, cc.c, CommentDeleteForPostMethod, CommentsRequest{PostID: postID})
	return err
}

// MediaClient is the media service over the wire. Images travel as
// base64 in JSON: the rpc.Client's MaxAnswerBytes must leave room for
// MaxMediaBody (the default, 16 MiB, does).
type MediaClient struct{ c *rpc.Client }

// NewMedia returns the media service of c's content instances.
func NewMedia(c *rpc.Client) *MediaClient { return &MediaClient{c: c} }

// Put is media.Service.Put. An image over media.MaxBytes is refused here
// (svc.ErrTooLarge), without sending it.
func (m *MediaClient) Put(ctx context.Context, data []byte) (media.Meta, error) {
	if len(data) > media.MaxBytes {
		return media.Meta{}, mediaTooLarge(len(data))
	}
	return rpc.Call(ctx, m.c, MediaPutMethod, MediaPutRequest{Data: data})
}

// Get is media.Service.Get.
func (m *MediaClient) Get(ctx context.Context, name string) (media.Meta, []byte, error) {
	o, err := rpc.Call(ctx, m.c, MediaGetMethod, MediaRequest{Name: name})
	return o.Meta, o.Data, err
}

// Thumbnail is media.Service.Thumbnail.
func (m *MediaClient) Thumbnail(ctx context.Context, name string) (media.Meta, error) {
	return rpc.Call(ctx, m.c, MediaThumbnailMethod, MediaRequest{Name: name})
}
