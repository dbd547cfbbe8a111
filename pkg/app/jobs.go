package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/scalestack/scalestack/internal/tracectx"
	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/internal/ids"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// Job is a side effect of a request that need not happen inside it: it can
// run inline (stage 1) or be consumed from a queue by a worker (stage 8).
type Job struct {
	Kind string `json:"kind"`
	// ID is the idempotency key: a job delivered twice has one effect.
	// It is time-ordered (see NewJob), and notifications use it as their id.
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
	// Trace is the W3C traceparent of the request that caused the job
	// (its span as the parent), so that the worker logs the job under the
	// request's trace id. Empty: none. Not checked by CheckJob: a worker
	// that cannot parse it starts a trace of its own.
	Trace string `json:"trace,omitempty"`
}

// Traced returns j carrying the trace of ctx, unless it has one already.
func (j Job) Traced(ctx context.Context) Job {
	if j.Trace == "" {
		j.Trace = tracectx.Traceparent(ctx)
	}
	return j
}

// Jobs takes jobs. Enqueue returns once the job is done (inline) or
// durably queued (a queue).
type Jobs interface {
	Enqueue(ctx context.Context, j Job) error
}

// Kinds of job.
const (
	// JobWelcome writes a welcome e-mail to the outbox. Payload: WelcomePayload.
	JobWelcome = "welcome-email"
	// JobNotifyFollowers tells an author's followers of a new post. Payload: PostPayload.
	JobNotifyFollowers = "notify-followers"
	// JobCommentAdded updates a post's comment count and tells its author.
	// Payload: CommentPayload.
	JobCommentAdded = "comment-added"
	// JobThumbnail makes the thumbnail of a post's image. Payload: ImagePayload.
	JobThumbnail = "thumbnail"
	// JobView counts one view of a post. Payload: PostPayload.
	JobView = "view"
	// JobIndex (re)indexes a post for search, or removes it if it is gone
	// or unpublished. Payload: PostPayload.
	JobIndex = "index"
)

// Errors of jobs that will never succeed, however often they are tried: a
// queue must not retry them (the worker moves them to the dead-letter
// stream at once).
var (
	// ErrUnknownJob: no handler for the job's kind.
	ErrUnknownJob = errors.New("unknown job kind")
	// ErrBadJob: a field of the job is not what the app writes (CheckJob),
	// or the thing it names can never be processed (an image over the
	// decoding limits).
	ErrBadJob = errors.New("bad job")
)

// CheckJob checks every field of j that a handler turns into output (a
// file name, an e-mail header, a notification) or looks data up by, as if
// the job came from anyone who can publish to the queue, not from the app:
// ids have the app's id form, handles the handle form, an e-mail address
// is one plain address (net/mail) with no line break, an image the media
// name form. A job that fails is ErrBadJob (an unknown kind ErrUnknownJob).
// Fields no handler uses (a welcome's user id, a comment's id) are not
// checked.
func CheckJob(j Job) error {
	if !ids.Valid(j.ID) {
		return fmt.Errorf("job id %q is not an id: %w", j.ID, ErrBadJob)
	}
	id := func(what, v string) error {
		if !ids.Valid(v) {
			return fmt.Errorf("%s %q is not an id: %w", what, v, ErrBadJob)
		}
		return nil
	}
	handle := func(what, v string) error {
		if accounts.ValidHandle(v) != "" {
			return fmt.Errorf("%s %q is not a handle: %w", what, v, ErrBadJob)
		}
		return nil
	}
	var err error
	switch j.Kind {
	case JobWelcome:
		var p WelcomePayload
		if err = strictDecode(j, &p); err == nil {
			if err = handle("handle", p.Handle); err == nil {
				err = CheckEmail(p.Email)
			}
		}
	case JobNotifyFollowers, JobView, JobIndex:
		var p PostPayload
		if err = strictDecode(j, &p); err == nil {
			err = id("post id", p.PostID)
		}
	case JobCommentAdded:
		var p CommentPayload
		if err = strictDecode(j, &p); err == nil {
			err = errors.Join(id("post id", p.PostID), id("author id", p.AuthorID), handle("author", p.Author))
		}
	case JobThumbnail:
		var p ImagePayload
		if err = strictDecode(j, &p); err == nil {
			if err = id("post id", p.PostID); err == nil && !media.ValidName(p.Image) {
				err = fmt.Errorf("image %q is not a media name: %w", p.Image, ErrBadJob)
			}
		}
	default:
		return fmt.Errorf("job %s: %q: %w", j.ID, j.Kind, ErrUnknownJob)
	}
	if err != nil {
		return fmt.Errorf("job %s %s: %w", j.Kind, j.ID, err)
	}
	return nil
}

// strictDecode decodes a payload that CheckJob checks: anything but a JSON
// object of the payload's fields is a bad job.
func strictDecode(j Job, v any) error {
	if err := json.Unmarshal(j.Payload, v); err != nil {
		return fmt.Errorf("decode payload: %v: %w", err, ErrBadJob)
	}
	return nil
}

// CheckEmail reports whether addr may be written into an e-mail's header:
// one bare address as net/mail reads it (no display name, no list, no
// comment), at most accounts.MaxEmail bytes, with no control character
// (a line break would start a header of the sender's choosing).
func CheckEmail(addr string) error {
	if addr == "" || len(addr) > accounts.MaxEmail || strings.ContainsFunc(addr, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("e-mail %q: %w", addr, ErrBadJob)
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" {
		return fmt.Errorf("e-mail %q is not one plain address: %w", addr, ErrBadJob)
	}
	return nil
}

// HeaderText makes s safe as the text of an e-mail header (a subject, a
// display name): RFC 2047 encoded when it holds anything but printable
// ASCII, so no line break in it can start a header of its own.
func HeaderText(s string) string { return mime.QEncoding.Encode("utf-8", s) }

// WelcomePayload is the payload of JobWelcome.
type WelcomePayload struct {
	UserID string `json:"user_id"`
	Handle string `json:"handle"`
	Email  string `json:"email"`
}

// PostPayload names a post.
type PostPayload struct {
	PostID string `json:"post_id"`
}

// CommentPayload is the payload of JobCommentAdded.
type CommentPayload struct {
	PostID    string `json:"post_id"`
	CommentID string `json:"comment_id"`
	AuthorID  string `json:"author_id"`
	Author    string `json:"author"`
}

// ImagePayload is the payload of JobThumbnail.
type ImagePayload struct {
	PostID string `json:"post_id"`
	Image  string `json:"image"`
}

// NewJob returns a job of kind with a fresh time-ordered id.
func NewJob(kind string, payload any) Job {
	raw, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("app: encode %s payload: %v", kind, err))
	}
	return Job{Kind: kind, ID: ids.New(), Payload: raw}
}

// Handlers does the work of each job kind over the services. The worker
// role of stage 8 builds one with the same services and calls Handle for
// each message it consumes. Every handler is idempotent.
type Handlers struct {
	svc    Services
	outbox string
	log    *slog.Logger
}

// NewHandlers returns the job handlers. outbox is the folder welcome
// e-mails are written to (created if missing); log may be nil.
func NewHandlers(s Services, outbox string, log *slog.Logger) *Handlers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handlers{svc: s, outbox: outbox, log: log}
}

// Handle runs the handler of j's kind, after CheckJob.
func (h *Handlers) Handle(ctx context.Context, j Job) error {
	if err := CheckJob(j); err != nil {
		return err
	}
	var err error
	switch j.Kind {
	case JobWelcome:
		err = h.Welcome(ctx, j)
	case JobNotifyFollowers:
		err = h.NotifyFollowers(ctx, j)
	case JobCommentAdded:
		err = h.CommentAdded(ctx, j)
	case JobThumbnail:
		err = h.Thumbnail(ctx, j)
	case JobView:
		err = h.View(ctx, j)
	case JobIndex:
		err = h.Index(ctx, j)
	default:
		err = fmt.Errorf("job %s: %q: %w", j.ID, j.Kind, ErrUnknownJob)
	}
	if err != nil {
		return fmt.Errorf("job %s %s: %w", j.Kind, j.ID, err)
	}
	return nil
}

func decode(j Job, v any) error {
	if err := json.Unmarshal(j.Payload, v); err != nil {
		return fmt.Errorf("decode payload: %w", err)
	}
	return nil
}

// Welcome writes <outbox>/<job id>.eml; a second run finds the file and stops.
func (h *Handlers) Welcome(ctx context.Context, j Job) error {
	var p WelcomePayload
	if err := decode(j, &p); err != nil {
		return err
	}
	if !ids.Valid(j.ID) {
		return fmt.Errorf("welcome: job id %q is not an id", j.ID)
	}
	path := filepath.Join(h.outbox, j.ID+".eml")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(h.outbox, 0o755); err != nil {
		return fmt.Errorf("welcome: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: scalestack blog <noreply@scalestack.invalid>\r\n")
	fmt.Fprintf(&b, "To: %s <%s>\r\n", HeaderText(p.Handle), p.Email)
	fmt.Fprintf(&b, "Subject: %s\r\n", HeaderText("Welcome to the blog, "+p.Handle))
	fmt.Fprintf(&b, "Date: %s\r\n", ids.Time(j.ID).UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@scalestack.invalid>\r\n", j.ID)
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	fmt.Fprintf(&b, "Hello %s,\r\n\r\nyour account is ready. Write your first post at /new.\r\n", p.Handle)
	// Write then rename, so a crash never leaves half an e-mail in the outbox.
	tmp, err := os.CreateTemp(h.outbox, ".welcome-*")
	if err != nil {
		return fmt.Errorf("welcome: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(b.String()); err != nil {
		tmp.Close()
		return fmt.Errorf("welcome: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("welcome: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("welcome: %w", err)
	}
	h.log.InfoContext(ctx, "welcome e-mail written", "user", p.Handle, "file", path)
	return nil
}

// NotifyFollowers adds a notification, keyed by the job id, for each follower.
func (h *Handlers) NotifyFollowers(ctx context.Context, j Job) error {
	var p PostPayload
	if err := decode(j, &p); err != nil {
		return err
	}
	post, err := h.svc.Posts.Get(ctx, p.PostID)
	if errors.Is(err, svc.ErrNotFound) {
		return nil // deleted since: nothing to tell
	}
	if err != nil {
		return err
	}
	if !post.Published {
		return nil
	}
	followers, err := h.svc.Accounts.Followers(ctx, post.AuthorID)
	if err != nil {
		return err
	}
	return h.svc.Notifications.Add(ctx, notify.Notification{
		ID: j.ID, Kind: notify.KindPost, Actor: post.Author, PostID: post.ID,
		PostTitle: post.Title, CreatedAt: ids.Time(j.ID).UTC(),
	}, followers...)
}

// CommentAdded recounts a post's comments and tells the post's author
// (RecountComments, then NotifyPostAuthor). At stage 10 the two halves
// belong to two services: the content service recounts, the notifications
// service tells (EventHandlers).
func (h *Handlers) CommentAdded(ctx context.Context, j Job) error {
	if err := h.RecountComments(ctx, j); err != nil {
		return err
	}
	return h.NotifyPostAuthor(ctx, j)
}

// RecountComments sets a post's comment count to the number of its
// comments: a count, not an increment, so it is idempotent. Payload:
// CommentPayload.
func (h *Handlers) RecountComments(ctx context.Context, j Job) error {
	var p CommentPayload
	if err := decode(j, &p); err != nil {
		return err
	}
	n, err := h.svc.Comments.Count(ctx, p.PostID)
	if err != nil {
		return err
	}
	err = h.svc.Posts.SetComments(ctx, p.PostID, n)
	if errors.Is(err, svc.ErrNotFound) {
		return nil
	}
	return err
}

// NotifyPostAuthor tells a post's author of a comment, unless they wrote
// it, with a notification keyed by the job id. Payload: CommentPayload.
func (h *Handlers) NotifyPostAuthor(ctx context.Context, j Job) error {
	var p CommentPayload
	if err := decode(j, &p); err != nil {
		return err
	}
	post, err := h.svc.Posts.Get(ctx, p.PostID)
	if errors.Is(err, svc.ErrNotFound) {
		return nil // deleted since: nothing to tell
	}
	if err != nil {
		return err
	}
	if post.AuthorID == p.AuthorID {
		return nil
	}
	return h.svc.Notifications.Add(ctx, notify.Notification{
		ID: j.ID, Kind: notify.KindComment, Actor: p.Author, PostID: post.ID,
		PostTitle: post.Title, CreatedAt: ids.Time(j.ID).UTC(),
	}, post.AuthorID)
}

// Thumbnail makes the thumbnail of an image (content-addressed, so twice is
// once) and attaches it to the post if the post still shows that image.
func (h *Handlers) Thumbnail(ctx context.Context, j Job) error {
	var p ImagePayload
	if err := decode(j, &p); err != nil {
		return err
	}
	thumb, err := h.svc.Media.Thumbnail(ctx, p.Image)
	if errors.Is(err, svc.ErrTooLarge) || errors.Is(err, svc.ErrUnsupported) {
		return fmt.Errorf("%w: %w", ErrBadJob, err) // never within the limits
	}
	if err != nil {
		return err
	}
	_, err = h.svc.Posts.SetThumb(ctx, p.PostID, p.Image, thumb.Name)
	if errors.Is(err, svc.ErrNotFound) {
		return nil
	}
	return err
}

// View counts one view; the posts service remembers recent job ids, so a
// redelivered view job counts once.
func (h *Handlers) View(ctx context.Context, j Job) error {
	var p PostPayload
	if err := decode(j, &p); err != nil {
		return err
	}
	err := h.svc.Posts.AddView(ctx, p.PostID, j.ID)
	if errors.Is(err, svc.ErrNotFound) {
		return nil
	}
	return err
}

// Index makes the search index agree with the post as it is now.
func (h *Handlers) Index(ctx context.Context, j Job) error {
	var p PostPayload
	if err := decode(j, &p); err != nil {
		return err
	}
	post, err := h.svc.Posts.Get(ctx, p.PostID)
	if errors.Is(err, svc.ErrNotFound) || err == nil && !post.Published {
		return h.svc.Search.Remove(ctx, p.PostID)
	}
	if err != nil {
		return err
	}
	return h.svc.Search.Index(ctx, post.ID, post.Title, post.Tags, post.Body)
}

// InlineJobs runs each job in the caller's request (--jobs=inline): the
// simplest thing, and what stage 8 measures the queue against.
type InlineJobs struct{ H *Handlers }

// Enqueue implements Jobs by running the job now.
func (q InlineJobs) Enqueue(ctx context.Context, j Job) error { return q.H.Handle(ctx, j) }
