package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/search"
	"github.com/scalestack/scalestack/pkg/app/svc"
	"github.com/scalestack/scalestack/pkg/store"
)

// Events as jobs: at stage 10 the side effects that the app's jobs do for
// search and notifications come from the services' events instead
// (docs/events.md). Each event becomes the job that did the same work,
// with the event's ID as the job's ID, and runs through the same handler,
// whose idempotence by job ID then makes a redelivered event harmless: the
// index is made to agree with the post as it is now, a notification is
// keyed by its ID, a welcome e-mail's file is named by it.
//
// The event ID can be the job ID as it is: svc.NewEvent makes it with
// ids.At(the event's time), so it has the id form that CheckJob and the
// handlers require, and ids.Time of it is the event's time (to the
// millisecond), which dates the notification and the e-mail.

// EventHandlers returns the handlers of the events that service consumes,
// by event type, for its node's subscriber (pkg/app/events): "search"
// (search.Name) re-indexes a post on post.changed; "notifications"
// (notify.Name) tells an author's followers of post.published, a post's
// author of comment.added (the count of comments is the content service's
// business), and writes the welcome e-mail of user.signed_up into h's
// outbox folder. Any other service: nil.
//
// A handler's error matches svc.ErrBadEvent when the event can never be
// applied (its data does not decode, or a field is not what the services
// write, as CheckJob judges a job), so the subscriber drops it; any other
// error is retried.
func (h *Handlers) EventHandlers(service string) map[string]func(context.Context, svc.Event) error {
	switch service {
	case search.Name:
		return map[string]func(context.Context, svc.Event) error{
			svc.EventPostChanged: eventJob(svc.EventPostChanged, JobIndex, func(d svc.PostChanged) any {
				return PostPayload{PostID: d.PostID}
			}, h.Index),
		}
	case notify.Name:
		return map[string]func(context.Context, svc.Event) error{
			svc.EventPostPublished: eventJob(svc.EventPostPublished, JobNotifyFollowers, func(d svc.PostPublished) any {
				return PostPayload{PostID: d.PostID}
			}, h.NotifyFollowers),
			svc.EventCommentAdded: eventJob(svc.EventCommentAdded, JobCommentAdded, func(d svc.CommentAdded) any {
				return CommentPayload{PostID: d.PostID, CommentID: d.CommentID, AuthorID: d.AuthorID, Author: d.Author}
			}, h.NotifyPostAuthor),
			svc.EventUserSignedUp: eventJob(svc.EventUserSignedUp, JobWelcome, func(d svc.UserSignedUp) any {
				return WelcomePayload{UserID: d.UserID, Handle: d.Handle, Email: d.Email}
			}, h.Welcome),
		}
	}
	return nil
}

// eventJob returns the handler of events of type typ: it decodes the
// event's data (D), makes of it the job of kind whose payload payload
// returns, with the event's ID, checks that job as the worker checks every
// job (CheckJob: ids, handles, e-mail addresses), and runs run on it.
func eventJob[D any](typ, kind string, payload func(D) any, run func(context.Context, Job) error) func(context.Context, svc.Event) error {
	return func(ctx context.Context, ev svc.Event) error {
		if ev.Type != typ {
			return fmt.Errorf("%w: event %s is a %q, given to the handler of %q", svc.ErrBadEvent, ev.ID, ev.Type, typ)
		}
		var d D
		if err := ev.Decode(&d); err != nil {
			return err
		}
		raw, err := json.Marshal(payload(d))
		if err != nil {
			return fmt.Errorf("%w: event %s %s: %v", svc.ErrBadEvent, ev.Type, ev.ID, err)
		}
		j := Job{Kind: kind, ID: ev.ID, Payload: raw}.Traced(ctx)
		if err := CheckJob(j); err != nil {
			return fmt.Errorf("%w: event %s %s: %w", svc.ErrBadEvent, ev.Type, ev.ID, err)
		}
		// The event was published after its change committed, so the
		// change is on the primary of its group; a replica may not have
		// it yet, and a handler that reads the post "as it is now" there
		// would read it as it was (a publish not yet seen would remove the
		// post from the index). Strong is the default; saying so keeps it
		// so whatever the subscriber's context carries.
		ctx = store.WithConsistency(ctx, store.Strong, 0)
		if err := run(ctx, j); err != nil {
			if errors.Is(err, ErrBadJob) {
				return fmt.Errorf("%w: event %s %s: %w", svc.ErrBadEvent, ev.Type, ev.ID, err)
			}
			return fmt.Errorf("event %s %s: %w", ev.Type, ev.ID, err)
		}
		return nil
	}
}
