package svc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/store"
)

// Events between services: what one service tells the others after a
// change of its own ("post published", "badge granted"), when no store
// transaction can span the two services' groups.
//
// A service writes the event into its own outbox bucket in the same store
// transaction as the change (EventOutbox.Put), so the change and its event
// commit together or not at all. A publisher outside the service
// (pkg/app/events) publishes the outbox after the commit, with the event's
// ID as its deduplication key, and removes each entry once the transport
// has it; a consumer applies each event in a transaction that also records
// its ID (ApplyOnce), so a repeat changes nothing. Delivered at least once,
// applied at most once: exactly once in effect. docs/events.md has the
// argument step by step.
//
// A service never imports the transport (internal/importrules): it writes
// into its outbox and exposes a handler of svc.Event, and the node wires
// the two to NATS.

// Event types. A type names what happened, as "<noun>.<past tense>", and
// is the last tokens of the event's subject (events.<type>), so it is
// lowercase letters, digits, '-' and '_' in dot-separated tokens
// (ValidEventType).
const (
	// EventPostPublished: a post became visible (data: PostPublished).
	// Stage 10's content service writes it; search and notifications
	// consume it.
	EventPostPublished = "post.published"
	// EventPostChanged: a post was created, edited, published,
	// unpublished, given a thumbnail or deleted (data: PostChanged). The
	// content service writes it with every such change; consumers read the
	// post as it is now (search re-indexes it), so the order they see
	// changes in does not matter.
	EventPostChanged = "post.changed"
	// EventCommentAdded: a comment was added to a post (data:
	// CommentAdded). The content service writes it; notifications tells
	// the post's author.
	EventCommentAdded = "comment.added"
	// EventUserSignedUp: an account was made (data: UserSignedUp). The
	// users service writes it; notifications sends the welcome e-mail.
	EventUserSignedUp = "user.signed_up"
	// EventBadgeGranted: a supporter badge was paid for (data:
	// BadgeGranted). The payments service writes it; the users service
	// (accounts) grants the badge.
	EventBadgeGranted = "badge.granted"
)

// PostPublished is the data of an EventPostPublished.
type PostPublished struct {
	PostID   string `json:"post_id"`
	AuthorID string `json:"author_id"`
}

// PostChanged is the data of an EventPostChanged.
type PostChanged struct {
	PostID   string `json:"post_id"`
	AuthorID string `json:"author_id"`
}

// CommentAdded is the data of an EventCommentAdded: the comment, and who
// wrote it (AuthorID, and Author, their handle).
type CommentAdded struct {
	PostID    string `json:"post_id"`
	CommentID string `json:"comment_id"`
	AuthorID  string `json:"author_id"`
	Author    string `json:"author"`
}

// UserSignedUp is the data of an EventUserSignedUp.
type UserSignedUp struct {
	UserID string `json:"user_id"`
	Handle string `json:"handle"`
	Email  string `json:"email"`
}

// BadgeGranted is the data of an EventBadgeGranted: who gets the badge,
// and the payment that bought it.
type BadgeGranted struct {
	UserID    string `json:"user_id"`
	PaymentID string `json:"payment_id"`
}

// Event is one event, as kept in an outbox and as carried by the
// transport (its JSON is the message body).
type Event struct {
	// ID is unique and time-ordered (so an outbox scan is oldest first);
	// the transport deduplicates by it and consumers apply each ID once.
	ID string `json:"id"`
	// Type says what happened (EventPostPublished, ...).
	Type string `json:"type"`
	// Source is the service that wrote it ("payments", "content").
	Source string `json:"source"`
	// Time is when the change happened, in UTC.
	Time time.Time `json:"time"`
	// Data is the type's payload (PostPublished, BadgeGranted, ...) as JSON.
	Data json.RawMessage `json:"data,omitempty"`
}

// ErrBadEvent: an event cannot be applied, now or ever (its data does not
// decode, or its type is not the one the handler takes). A consumer drops
// it rather than retrying it forever; any other error of a handler is
// retried.
var ErrBadEvent = errors.New("bad event")

// NewEvent returns an event of typ from source, made at, with data encoded
// as its Data and a fresh time-ordered ID. data is the service's own
// struct, so an encoding error is a programming mistake and panics.
func NewEvent(source, typ string, at time.Time, data any) Event {
	raw, err := json.Marshal(data)
	if err != nil {
		panic(fmt.Sprintf("svc: encode the data of a %s event: %v", typ, err))
	}
	at = at.UTC()
	return Event{ID: ids.At(at), Type: typ, Source: source, Time: at, Data: raw}
}

// Decode decodes ev's Data into v. The error matches ErrBadEvent.
func (ev Event) Decode(v any) error {
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return fmt.Errorf("%w: %s %s: data: %v", ErrBadEvent, ev.Type, ev.ID, err)
	}
	return nil
}

// ValidEventType reports whether typ can be an event type: 1 to 64 bytes,
// dot-separated non-empty tokens of a-z, 0-9, '-' and '_' (a subject
// without wildcards, and a consumer name once its dots are replaced).
func ValidEventType(typ string) bool {
	if len(typ) == 0 || len(typ) > 64 || typ[0] == '.' || typ[len(typ)-1] == '.' {
		return false
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.' && typ[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// MaxOutboxBatch is the most events EventOutbox.Pending returns at once.
const MaxOutboxBatch = 100

// EventOutbox is a service's outbox of events: one entry per event not yet
// taken by the transport, in the service's own bucket "<service>.outbox",
// keyed by event ID, the value the Event as JSON.
type EventOutbox struct {
	st     store.Store
	bucket string
}

// OutboxOf returns the outbox of service over st, the service's store.
func OutboxOf(st store.Store, service string) EventOutbox {
	return EventOutbox{st: st, bucket: OutboxBucket(service)}
}

// OutboxBucket is the bucket of service's event outbox.
func OutboxBucket(service string) string { return service + ".outbox" }

// Bucket is the outbox's bucket.
func (o EventOutbox) Bucket() string { return o.bucket }

// Put returns the operation that adds ev to the outbox: a service appends
// it to the transaction that makes the change ev tells of.
func (o EventOutbox) Put(ev Event) store.Op {
	raw, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("svc: encode event %s: %v", ev.ID, err))
	}
	return store.Put(o.bucket, ev.ID, raw)
}

// Pending returns up to limit events of the outbox whose IDs sort after
// after ("" for the oldest), oldest first (limit zero or less, or more
// than MaxOutboxBatch: MaxOutboxBatch). An entry that is not an Event as
// this version writes it is not returned but named in undecodable, so a
// publisher can report it without stopping at it. next is the key to pass
// as after for the following page, "" when this page was the last.
//
// The outbox is read on the primary: a replica behind it would show
// entries already published and removed.
func (o EventOutbox) Pending(ctx context.Context, after string, limit int) (evs []Event, undecodable []string, next string, err error) {
	if limit <= 0 || limit > MaxOutboxBatch {
		limit = MaxOutboxBatch
	}
	opts := store.ScanOptions{Limit: limit}
	if after != "" {
		opts.Start = after + "\x00"
	}
	pairs, err := o.st.Scan(store.WithConsistency(ctx, store.Strong, 0), o.bucket, opts)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, "", nil // no event was ever written
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("read outbox %s: %w", o.bucket, err)
	}
	for _, p := range pairs {
		var ev Event
		if err := json.Unmarshal(p.Value, &ev); err != nil || ev.ID != p.Key || !ValidEventType(ev.Type) {
			undecodable = append(undecodable, p.Key)
			continue
		}
		evs = append(evs, ev)
	}
	if len(pairs) == limit {
		next = pairs[len(pairs)-1].Key
	}
	return evs, undecodable, next, nil
}

// Remove deletes the events with ids from the outbox, once the transport
// has acknowledged them. An ID no longer there is ignored, so two
// publishers removing one event is not an error.
func (o EventOutbox) Remove(ctx context.Context, ids ...string) error {
	for chunk := range slices.Chunk(ids, store.MaxTxnOps) {
		ops := make([]store.Op, len(chunk))
		for i, id := range chunk {
			ops[i] = store.Delete(o.bucket, id)
		}
		if _, err := o.st.Txn(ctx, ops...); err != nil {
			return fmt.Errorf("remove from outbox %s: %w", o.bucket, err)
		}
	}
	return nil
}

// applyTries bounds ApplyOnce's retries of a transaction whose condition
// failed under a concurrent writer.
const applyTries = 40

// ApplyOnce applies the effect of event eventID once: it commits the
// operations effect returns together with a record of eventID in bucket
// (the consumer's own "applied events" bucket), on condition that the
// record is absent. applied is false when eventID had been applied
// already, by an earlier delivery or a concurrent one.
//
// effect reads what it needs and returns the operations of the change,
// conditions included; it is called again when the transaction's
// conditions fail and eventID is still not recorded (a concurrent change
// of what effect read), up to 40 times, then the error matches
// ErrConflict. The record keeps value (say, whom the event was about).
//
// Records are kept for good: a repeat can come from a republish that the
// transport's deduplication window no longer remembers.
func ApplyOnce(ctx context.Context, st store.Store, bucket, eventID string, value []byte, effect func(ctx context.Context) ([]store.Op, error)) (applied bool, err error) {
	if eventID == "" {
		return false, fmt.Errorf("%w: an event without an id", ErrBadEvent)
	}
	if value == nil {
		value = []byte{}
	}
	// Read on the primary: a replica behind it could miss the record the
	// failed condition saw, and every try would fail alike.
	ctx = store.WithConsistency(ctx, store.Strong, 0)
	for range applyTries {
		if _, err := st.Get(ctx, bucket, eventID); err == nil {
			return false, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return false, fmt.Errorf("apply event %s: %w", eventID, err)
		}
		ops, err := effect(ctx)
		if err != nil {
			return false, err
		}
		ops = append(ops, store.IfAbsent(bucket, eventID), store.Put(bucket, eventID, value))
		_, err = st.Txn(ctx, ops...)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, store.ErrConditionFailed) {
			return false, fmt.Errorf("apply event %s: %w", eventID, err)
		}
	}
	return false, fmt.Errorf("apply event %s: %w", eventID, ErrConflict)
}
