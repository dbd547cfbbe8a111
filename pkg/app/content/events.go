package content

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// The content service's events (docs/events.md). Each is written into the
// service's outbox in the store transaction of the change it tells of,
// through the services' outbox hook (svc.WithOutbox): the posts and
// comments services hand the hook what they are about to write, once per
// attempt (a compare-and-set retry builds its transaction again, with
// fresh events; only the attempt that commits leaves any), and add the
// operations it returns to that attempt's transaction.
//
//   - post.changed: every create, edit, publish, unpublish, thumbnail and
//     delete of a post. Consumers read the post as it is now.
//   - post.published: a post became visible: created published, or a
//     draft published by an edit. Decided from the post as stored before
//     the write (posts.Change.Before, which the write's compare-and-set
//     holds), with the gateway's rule for notifying followers: published
//     now and not before. So a post unpublished and published again is
//     published again, as the app's jobs had it.
//   - comment.added: a comment was added.
//
// A view or a comment count changes no event: nobody outside reads them.

// withPostEvents returns ctx whose writes of a post (posts.Change) put
// their events into d's outbox, and a flag set once a write has put some.
func withPostEvents(ctx context.Context, d Deps) (context.Context, *bool) {
	wrote := new(bool)
	return svc.WithOutbox(ctx, func(c posts.Change) []store.Op {
		evs := postEvents(c, time.Now())
		ops := make([]store.Op, len(evs))
		for i, ev := range evs {
			ops[i] = d.Outbox.Put(ev)
		}
		*wrote = true
		return ops
	}), wrote
}

// postEvents are the events of the post write c.
func postEvents(c posts.Change, at time.Time) []svc.Event {
	p := c.After
	if p.ID == "" { // deleted
		p = c.Before
	}
	evs := []svc.Event{svc.NewEvent(Name, svc.EventPostChanged, at, svc.PostChanged{PostID: p.ID, AuthorID: p.AuthorID})}
	if c.After.Published && !c.Before.Published {
		ev := svc.NewEvent(Name, svc.EventPostPublished, at, svc.PostPublished{PostID: p.ID, AuthorID: p.AuthorID})
		for ev.ID == evs[0].ID {
			// Two ids of one millisecond share 20 random bits: once in a
			// million, the second would replace the first in the outbox.
			ev = svc.NewEvent(Name, svc.EventPostPublished, at, svc.PostPublished{PostID: p.ID, AuthorID: p.AuthorID})
		}
		evs = append(evs, ev)
	}
	return evs
}

// withCommentEvents returns ctx whose writes of a comment put a
// comment.added into d's outbox, and a flag set once one has.
func withCommentEvents(ctx context.Context, d Deps) (context.Context, *bool) {
	wrote := new(bool)
	return svc.WithOutbox(ctx, func(c comments.Comment) []store.Op {
		*wrote = true
		return []store.Op{d.Outbox.Put(svc.NewEvent(Name, svc.EventCommentAdded, c.CreatedAt,
			svc.CommentAdded{PostID: c.PostID, CommentID: c.ID, AuthorID: c.AuthorID, Author: c.Author}))}
	}), wrote
}

// committed tells the node that a write which succeeded put events into
// the outbox, so its publisher takes them now rather than at its sweep.
func (d Deps) committed(err error, wrote *bool) {
	if err == nil && *wrote && d.EventsCommitted != nil {
		d.EventsCommitted()
	}
}

// Handlers returns the content service's handlers of its own events, by
// event type, for the content node to subscribe (events.Subscription): the
// follow-ups of a change that were the app's jobs.
//
//   - comment.added: the post's comment count is counted again (a count,
//     not an increment, so a repeat sets the same number).
//   - post.changed: a post that shows an image without its thumbnail gets
//     one (content-addressed, so made twice it is stored once; attached
//     only while the post still shows that image). Attaching it is itself
//     a post.changed, which finds the thumbnail there and does nothing.
//
// Both are idempotent as they stand, so they need no record of the events
// applied. They read on the primary: the event may come before a replica
// has the change it tells of.
func Handlers(d Deps) map[string]func(context.Context, svc.Event) error {
	return map[string]func(context.Context, svc.Event) error{
		svc.EventCommentAdded: d.recountComments,
		svc.EventPostChanged:  d.makeThumbnail,
	}
}

// recountComments handles a comment.added.
func (d Deps) recountComments(ctx context.Context, ev svc.Event) error {
	var c svc.CommentAdded
	if err := decodeEvent(ev, svc.EventCommentAdded, &c); err != nil {
		return err
	}
	if c.PostID == "" {
		return fmt.Errorf("content: %w: %s %s names no post", svc.ErrBadEvent, ev.Type, ev.ID)
	}
	ctx = store.WithConsistency(ctx, store.Strong, 0)
	n, err := d.Comments.Count(ctx, c.PostID)
	if err != nil {
		return fmt.Errorf("content: recount comments of %s: %w", c.PostID, err)
	}
	err = d.Posts.SetComments(ctx, c.PostID, n)
	if errors.Is(err, svc.ErrNotFound) {
		return nil // deleted since
	}
	if err != nil {
		return fmt.Errorf("content: recount comments of %s: %w", c.PostID, err)
	}
	return nil
}

// makeThumbnail handles a post.changed.
func (d Deps) makeThumbnail(ctx context.Context, ev svc.Event) error {
	var c svc.PostChanged
	if err := decodeEvent(ev, svc.EventPostChanged, &c); err != nil {
		return err
	}
	ctx = store.WithConsistency(ctx, store.Strong, 0)
	p, err := d.Posts.Get(ctx, c.PostID)
	if errors.Is(err, svc.ErrNotFound) {
		return nil // deleted since, or never a post
	}
	if err != nil {
		return fmt.Errorf("content: thumbnail of post %s: %w", c.PostID, err)
	}
	if p.Image == "" || p.Thumb != "" {
		return nil
	}
	thumb, err := d.Media.Thumbnail(ctx, p.Image)
	if errors.Is(err, svc.ErrTooLarge) || errors.Is(err, svc.ErrUnsupported) || errors.Is(err, svc.ErrNotFound) {
		// Never within the limits, or no such image: no retry will do.
		return fmt.Errorf("content: thumbnail of post %s: %w: %w", p.ID, svc.ErrBadEvent, err)
	}
	if err != nil {
		return fmt.Errorf("content: thumbnail of post %s: %w", p.ID, err)
	}
	wctx, wrote := withPostEvents(ctx, d)
	_, err = d.Posts.SetThumb(wctx, p.ID, p.Image, thumb.Name)
	d.committed(err, wrote)
	if errors.Is(err, svc.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("content: thumbnail of post %s: %w", p.ID, err)
	}
	return nil
}

// decodeEvent checks that ev is of type typ and decodes its data into v;
// the error matches svc.ErrBadEvent.
func decodeEvent(ev svc.Event, typ string, v any) error {
	if ev.Type != typ {
		return fmt.Errorf("content: %w: %s %s is not a %s", svc.ErrBadEvent, ev.Type, ev.ID, typ)
	}
	if err := ev.Decode(v); err != nil {
		return fmt.Errorf("content: %w", err)
	}
	return nil
}
