package worker_test

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/posts"
)

// Anyone who can publish to NATS can publish a job. A job whose fields are
// not what the app writes (an e-mail address that injects headers or
// names several recipients, a handle with a line break, ids that are not
// ids, a payload that is not JSON) is refused at its first try: moved to
// the dead-letter stream without a retry, and no e-mail is written.
func TestWorkerBuriesBadJobs(t *testing.T) {
	e := newEnv(t)
	b := seed(t, e.svc, 1, 1)
	w := e.startWorker(t, nil)
	p := e.publisher(t)
	ctx := ctxT(t)
	post := b.posts[0]
	raw := func(kind, payload string) app.Job {
		j := app.NewJob(kind, struct{}{})
		j.Payload = json.RawMessage(payload)
		return j
	}
	bad := []app.Job{
		app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "newbie", Email: "newbie@example.com>\r\nBcc: victim@evil.example"}),
		app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "newbie", Email: "newbie@example.com\r\nBcc: victim@evil.example"}),
		app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "newbie", Email: "newbie@example.com, victim@evil.example"}),
		app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "newbie", Email: "Newbie <newbie@example.com>"}),
		app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "newbie", Email: "not an address"}),
		app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "newbie\r\nBcc: victim@evil.example", Email: "newbie@example.com"}),
		app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "New Bie", Email: "newbie@example.com"}),
		app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: post, CommentID: post, AuthorID: b.followers[0],
			Author: "reader0\r\nBcc: victim@evil.example"}),
		app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: "../../x", CommentID: post, AuthorID: b.followers[0], Author: "reader0"}),
		app.NewJob(app.JobThumbnail, app.ImagePayload{PostID: post, Image: "../../etc/passwd"}),
		app.NewJob(app.JobNotifyFollowers, app.PostPayload{PostID: "x\r\ny"}),
		raw(app.JobIndex, `not json`),
	}
	weird := app.NewJob(app.JobWelcome, app.WelcomePayload{Handle: "newbie", Email: "newbie@example.com"})
	weird.ID = "../../../tmp/x"
	bad = append(bad, weird)
	kinds := map[string]int64{}
	for _, j := range bad {
		kinds[j.Kind]++
		if err := p.Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	testwait.RetryUntil(t, 20*time.Second, func() error { // every bad job dead
		for kind, n := range kinds {
			if got := w.Counts(kind, "dead"); got != n {
				return fmt.Errorf("Counts(%s, dead) = %d, want %d", kind, got, n)
			}
		}
		return nil
	})
	for kind := range kinds {
		if got := w.Counts(kind, "retried"); got != 0 {
			t.Errorf("Counts(%s, retried) = %d, want 0: a bad job is refused at its first try", kind, got)
		}
		if got := w.Counts(kind, "done"); got != 0 {
			t.Errorf("Counts(%s, done) = %d, want 0", kind, got)
		}
	}
	if n := emails(t, e.outbox); n != 0 {
		t.Errorf("%d e-mails in the outbox after bad jobs, want none", n)
	}
}

// A post's title comes from the store, not the job, and may hold a line
// break (titles are free text): the comment e-mail to its author carries
// it encoded in the subject, never as a header of its own.
func TestCommentMailTitleCannotAddHeaders(t *testing.T) {
	e := newEnv(t)
	b := seed(t, e.svc, 1, 0)
	ctx := ctxT(t)
	title := "Hello\r\nBcc: victim@evil.example"
	pst, err := e.svc.Posts.Create(ctx, posts.Draft{AuthorID: b.author, Author: "author", Title: title, Body: "body", Published: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.svc.Comments.Create(ctx, pst.ID, b.followers[0], "reader0", "nice")
	if err != nil {
		t.Fatal(err)
	}
	w := e.startWorker(t, nil)
	job := app.NewJob(app.JobCommentAdded, app.CommentPayload{PostID: pst.ID, CommentID: c.ID, AuthorID: b.followers[0], Author: "reader0"})
	if err := e.publisher(t).Enqueue(ctx, job); err != nil {
		t.Fatal(err)
	}
	testwait.RetryUntil(t, 20*time.Second, func() error { // the comment job done
		if w.Counts(app.JobCommentAdded, "done") != 1 {
			return fmt.Errorf("not done")
		}
		return nil
	})
	f, err := os.Open(filepath.Join(e.outbox, job.ID+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatalf("read the e-mail: %v", err)
	}
	if got := msg.Header.Get("Bcc"); got != "" {
		t.Errorf("the e-mail has Bcc: %q, put there by the post's title", got)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || !strings.Contains(subject, "Bcc: victim@evil.example") || !strings.HasPrefix(subject, "reader0 commented on") {
		t.Errorf("Subject decodes to %q, %v; want the whole title in it", subject, err)
	}
}
