package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// batchViews is what a posts service offers for counting a batch of views
// in one write (posts.Service.AddViews). Services without it get one
// AddView per job.
type batchViews interface {
	AddViews(ctx context.Context, id string, jobIDs []string) error
}

// viewBatcher gathers view jobs for ViewWindow and then writes one
// increment per post, acking the jobs of a post only after its write. A
// view is a tiny job that, done one by one, would cost a store write per
// page view of a popular post.
type viewBatcher struct {
	w    *Worker
	in   chan viewJob
	quit chan struct{}
	once sync.Once
	// held counts the view jobs taken by add and not yet finished by a
	// flush (Status.ViewsHeld).
	held atomic.Int64
}

type viewJob struct {
	msg    jetstream.Msg
	job    app.Job
	postID string
	at     time.Time
}

func newViewBatcher(w *Worker) *viewBatcher {
	return &viewBatcher{w: w, in: make(chan viewJob, 1024), quit: make(chan struct{})}
}

// add takes a view job; the batcher answers the queue for it.
func (b *viewBatcher) add(m jetstream.Msg, job app.Job) {
	var p app.PostPayload
	if err := json.Unmarshal(job.Payload, &p); err != nil || p.PostID == "" {
		b.w.finish(m, job, fmt.Errorf("view: bad payload: %v", err), 0)
		return
	}
	b.held.Add(1)
	b.in <- viewJob{msg: m, job: job, postID: p.PostID, at: time.Now()}
}

// stop makes run write what it holds and return. The pool has stopped by
// then, so nothing is added after it.
func (b *viewBatcher) stop() { b.once.Do(func() { close(b.quit) }) }

// run is the batcher's goroutine, owned by Worker.run.
func (b *viewBatcher) run() {
	t := time.NewTicker(b.w.cfg.ViewWindow)
	defer t.Stop()
	var batch []viewJob
	for {
		select {
		case v := <-b.in:
			batch = append(batch, v)
		case <-t.C:
			b.flush(batch)
			batch = nil
		case <-b.quit:
			for {
				select {
				case v := <-b.in:
					batch = append(batch, v)
				default:
					b.flush(batch)
					return
				}
			}
		}
	}
}

func (b *viewBatcher) flush(batch []viewJob) {
	if len(batch) == 0 {
		return
	}
	byPost := map[string][]viewJob{}
	var order []string
	for _, v := range batch {
		if _, ok := byPost[v.postID]; !ok {
			order = append(order, v.postID)
		}
		byPost[v.postID] = append(byPost[v.postID], v)
	}
	for _, id := range order {
		vs := byPost[id]
		ctx, cancel := context.WithTimeout(b.w.jobCtx, b.w.cfg.JobTimeout)
		err := b.write(ctx, id, vs)
		cancel()
		for _, v := range vs {
			b.w.finish(v.msg, v.job, err, time.Since(v.at))
		}
		b.held.Add(-int64(len(vs)))
	}
}

func (b *viewBatcher) write(ctx context.Context, postID string, vs []viewJob) error {
	ids := make([]string, len(vs))
	for i, v := range vs {
		ids[i] = v.job.ID
	}
	var err error
	if bv, ok := b.w.svc.Posts.(batchViews); ok {
		err = bv.AddViews(ctx, postID, ids)
	} else {
		for _, id := range ids {
			if err = b.w.svc.Posts.AddView(ctx, postID, id); err != nil {
				break
			}
		}
	}
	if err != nil && isNotFound(err) {
		return nil // the post is gone: nothing to count
	}
	return err
}

func isNotFound(err error) bool { return errors.Is(err, svc.ErrNotFound) }

// idTime is the creation time in a blog id: its first 9 characters are
// milliseconds since the epoch in lowercase Crockford base32
// (pkg/app/internal/ids, which the worker cannot import).
func idTime(id string) time.Time {
	const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
	if len(id) < 9 {
		return time.Time{}
	}
	var ms int64
	for i := 0; i < 9; i++ {
		k := strings.IndexByte(alphabet, id[i])
		if k < 0 {
			return time.Time{}
		}
		ms = ms<<5 | int64(k)
	}
	return time.UnixMilli(ms)
}
