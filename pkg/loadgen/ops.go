package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxBody bounds what is read of one answer; the blog's pages are far
// smaller.
const maxBody = 8 << 20

// do sends one request as u (its cookies) and reads the whole answer. The
// latency runs from due, the time the request was scheduled. A 2xx JSON
// answer is decoded into out when out is not nil.
func (g *generator) do(ctx context.Context, u *user, op string, due time.Time, method, path string, in, out any) (result, []byte) {
	res := result{op: op, due: due}
	var body io.Reader
	contentType := "application/json"
	var key string
	if kb, ok := in.(keyedBody); ok {
		key, in = kb.key, kb.body
	}
	if mp, ok := in.(multipartBody); ok {
		body, contentType = bytes.NewReader(mp.body), mp.contentType
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			res.err = err
			return res, nil
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, body)
	if err != nil {
		res.err = err
		return res, nil
	}
	if in != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	req.Header.Set("User-Agent", "scalestack-loadgen")
	client := u.client
	if client == nil {
		client = &http.Client{Transport: g.transport, Timeout: g.cfg.Timeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		res.err = err
		res.latency = time.Since(due)
		return res, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	res.latency = time.Since(due)
	res.status = resp.StatusCode
	res.header = resp.Header
	if err != nil {
		res.err = err
		return res, nil
	}
	if out != nil && res.ok() && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			res.err = fmt.Errorf("%w: %s %s: %v", errBadAnswer, method, path, err)
		}
	}
	return res, b
}

// arrive is one arrival: user u does op, or, with ReadYourWrites and a
// write of u's not yet read back, reads it back.
func (g *generator) arrive(ctx context.Context, u *user, op string, due time.Time) {
	if op == OpAnon {
		// A reader without an account: none of u's state applies.
		g.anon(ctx, due)
		return
	}
	if u.loggedOut.Load() && !g.relogin(ctx, u, due) {
		return
	}
	if a := u.takeTip(); a != nil {
		// A tip answered "outcome unknown": the person retries it with
		// its key before doing anything else.
		g.sendTip(ctx, u, a, due)
		return
	}
	if g.cfg.ReadYourWrites {
		if w := u.take(); w != nil {
			g.checkOwn(ctx, u, w, due)
			return
		}
	}
	switch op {
	case OpRead:
		if id := g.randomPost(); id != "" {
			g.read(ctx, u, id, due)
			return
		}
		g.browse(ctx, u, due) // nothing to read yet
	case OpComment:
		if id := g.randomPost(); id != "" {
			g.comment(ctx, u, id, due)
			return
		}
		g.post(ctx, u, due) // nothing to comment on yet
	case OpPost:
		g.post(ctx, u, due)
	case OpSignup:
		g.signupNew(ctx, due)
	case OpPage:
		g.page(ctx, u, due)
	case OpPostImage:
		g.postImage(ctx, u, due)
	case OpSearch:
		g.search(ctx, u, due)
	case OpProfile:
		g.profile(ctx, u, due)
	case OpTip:
		g.tip(ctx, u, due)
	default:
		g.browse(ctx, u, due)
	}
}

type postJSON struct {
	ID     string `json:"id"`
	Author string `json:"author"` // the author's handle
}

func (g *generator) browse(ctx context.Context, u *user, due time.Time) {
	page := 1
	switch r := rand.IntN(10); {
	case r == 9:
		page = 3
	case r >= 7:
		page = 2
	}
	var out struct {
		Posts []postJSON `json:"posts"`
	}
	res, _ := g.do(ctx, u, OpBrowse, due, http.MethodGet, fmt.Sprintf("/api/v1/posts?page=%d", page), nil, &out)
	g.rec.add(res)
	g.addPosts(out.Posts)
}

func (g *generator) read(ctx context.Context, u *user, id string, due time.Time) {
	res, _ := g.do(ctx, u, OpRead, due, http.MethodGet, "/api/v1/posts/"+url.PathEscape(id), nil, nil)
	g.rec.add(res)
}

func (g *generator) page(ctx context.Context, u *user, due time.Time) {
	path := "/"
	if id := g.randomPost(); id != "" && rand.IntN(2) == 0 {
		path = "/p/" + url.PathEscape(id)
	}
	res, _ := g.do(ctx, u, OpPage, due, http.MethodGet, path, nil, nil)
	g.rec.add(res)
}

// anon loads a public page without a cookie: the home page or, as often,
// a post (newer ones more often, as readers follow the home page).
func (g *generator) anon(ctx context.Context, due time.Time) {
	path := "/"
	if id := g.randomPost(); id != "" && rand.IntN(2) == 0 {
		path = "/p/" + url.PathEscape(id)
	}
	res, _ := g.do(ctx, &user{handle: "(anonymous)"}, OpAnon, due, http.MethodGet, path, nil, nil)
	g.rec.add(res)
}

// postImage writes a post, then uploads a cover image to it; one result
// spans both requests, since a person waits for both. A failure of either
// is the operation's failure.
func (g *generator) postImage(ctx context.Context, u *user, due time.Time) {
	in := map[string]any{"title": g.title(), "body": g.markdown(), "tags": g.tags(), "published": true}
	var out struct {
		Post postJSON `json:"post"`
	}
	session := u.session.Load()
	res, _ := g.do(ctx, u, OpPostImage, due, http.MethodPost, "/api/v1/posts", in, &out)
	u.noteAuth(res, session)
	if res.ok() && out.Post.ID == "" {
		res.err = fmt.Errorf("%w: POST /api/v1/posts: no post id", errBadAnswer)
	}
	if !res.ok() {
		g.rec.add(res)
		return
	}
	// The post exists, acknowledged, whatever the upload does.
	g.addPost(out.Post.ID, u.handle)
	g.mu.Lock()
	g.ackPosts = append(g.ackPosts, out.Post.ID)
	g.mu.Unlock()
	u.put(&write{postID: out.Post.ID, at: time.Now()})

	body, err := g.images.upload(g.nextImage.Add(1))
	if err != nil {
		g.rec.add(result{op: OpPostImage, due: due, err: err, latency: time.Since(due)})
		return
	}
	res, _ = g.do(ctx, u, OpPostImage, due, http.MethodPost, "/api/v1/posts/"+url.PathEscape(out.Post.ID)+"/image", body, nil)
	u.noteAuth(res, session)
	g.rec.add(res)
}

func (g *generator) post(ctx context.Context, u *user, due time.Time) {
	in := map[string]any{"title": g.title(), "body": g.markdown(), "tags": g.tags(), "published": true}
	var out struct {
		Post postJSON `json:"post"`
	}
	session := u.session.Load()
	res, _ := g.do(ctx, u, OpPost, due, http.MethodPost, "/api/v1/posts", in, &out)
	u.noteAuth(res, session)
	if res.ok() && out.Post.ID == "" {
		res.err = fmt.Errorf("%w: POST /api/v1/posts: no post id", errBadAnswer)
	}
	g.rec.add(res)
	if !res.ok() {
		return
	}
	g.addPost(out.Post.ID, u.handle)
	g.mu.Lock()
	g.ackPosts = append(g.ackPosts, out.Post.ID)
	g.mu.Unlock()
	u.put(&write{postID: out.Post.ID, at: time.Now()})
}

func (g *generator) comment(ctx context.Context, u *user, postID string, due time.Time) {
	var out struct {
		Comment struct {
			ID string `json:"id"`
		} `json:"comment"`
	}
	in := map[string]string{"body": g.sentence(8 + rand.IntN(30))}
	session := u.session.Load()
	res, _ := g.do(ctx, u, OpComment, due, http.MethodPost, "/api/v1/posts/"+url.PathEscape(postID)+"/comments", in, &out)
	u.noteAuth(res, session)
	if res.ok() && out.Comment.ID == "" {
		res.err = fmt.Errorf("%w: POST comments: no comment id", errBadAnswer)
	}
	g.rec.add(res)
	if !res.ok() {
		return
	}
	g.mu.Lock()
	g.ackCmts[postID] = append(g.ackCmts[postID], out.Comment.ID)
	g.mu.Unlock()
	u.put(&write{postID: postID, commentID: out.Comment.ID, at: time.Now()})
}

// relogin logs u in again after the blog answered 401 to one of its
// writes (an app restart loses sessions kept in memory), as a person
// would: this arrival is the login. Arrivals of u while it is in flight
// wait for it, then go on (proceed is true).
func (g *generator) relogin(ctx context.Context, u *user, due time.Time) (proceed bool) {
	u.mu.Lock()
	if !u.loggedOut.Load() {
		u.mu.Unlock()
		return true
	}
	if wait := u.loggingIn; wait != nil {
		u.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
		}
		return true
	}
	done := make(chan struct{})
	u.loggingIn = done
	u.mu.Unlock()

	body := map[string]string{"handle": u.handle, "password": password}
	res, _ := g.do(ctx, u, OpLogin, due, http.MethodPost, "/api/v1/login", body, nil)
	g.rec.add(res)
	u.mu.Lock()
	if res.ok() {
		u.session.Add(1)
		u.loggedOut.Store(false)
	}
	u.loggingIn = nil
	u.mu.Unlock()
	close(done)
	return false
}

// noteAuth marks u as logged out when the blog no longer knows the session
// a write was sent with (session is u.session when it was sent; an answer
// to a request sent before the last login says nothing).
func (u *user) noteAuth(res result, session int64) {
	if res.err == nil && res.status == http.StatusUnauthorized && u.session.Load() == session {
		u.loggedOut.Store(true)
	}
}

// signupNew signs a new user up during the run; it joins the users.
func (g *generator) signupNew(ctx context.Context, due time.Time) {
	u := g.newUser()
	body := map[string]string{"handle": u.handle, "email": u.handle + "@load.test", "password": password}
	res, _ := g.do(ctx, u, OpSignup, due, http.MethodPost, "/api/v1/signup", body, nil)
	g.rec.add(res)
	if res.ok() {
		g.mu.Lock()
		g.users = append(g.users, u)
		g.mu.Unlock()
	}
}

// checkOwn reads back u's last acknowledged write as u.
func (g *generator) checkOwn(ctx context.Context, u *user, w *write, due time.Time) {
	found, res, full := g.readBack(ctx, u, w, due)
	g.rec.add(res)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !res.ok() && res.status != http.StatusNotFound:
		u.putBack(w) // an error is no answer: try again on the next arrival
		return
	case !found && full:
		g.ryw.Unchecked++
		return
	}
	g.ryw.Checks++
	if !found {
		g.ryw.Violations++
		if len(g.ryw.Examples) < maxExamples {
			what := "post " + w.postID
			if w.commentID != "" {
				what = "comment " + w.commentID + " on post " + w.postID
			}
			g.ryw.Examples = append(g.ryw.Examples, fmt.Sprintf("%s did not see their own %s %s after it was acknowledged (answered by %s)",
				u.handle, what, time.Since(w.at).Round(time.Millisecond), res.header.Get("X-Served-By")))
		}
	}
}

// maxExamples bounds the examples a summary lists.
const maxExamples = 5

// maxComments is the most comments the blog lists for a post
// (pkg/app/comments.MaxList): a missing comment in a full list proves
// nothing.
const maxComments = 500

// readBack reads write w as u: found says whether it is there; full that
// a comment list was at the blog's display limit, so absence proves
// nothing.
func (g *generator) readBack(ctx context.Context, u *user, w *write, due time.Time) (found bool, res result, full bool) {
	if w.commentID == "" {
		var out struct {
			Post postJSON `json:"post"`
		}
		res, _ = g.do(ctx, u, OpVerify, due, http.MethodGet, "/api/v1/posts/"+url.PathEscape(w.postID), nil, &out)
		return res.ok() && out.Post.ID == w.postID, res, false
	}
	var out struct {
		Comments []postJSON `json:"comments"`
	}
	res, _ = g.do(ctx, u, OpVerify, due, http.MethodGet, "/api/v1/posts/"+url.PathEscape(w.postID)+"/comments", nil, &out)
	found = slices.ContainsFunc(out.Comments, func(c postJSON) bool { return c.ID == w.commentID })
	return found, res, len(out.Comments) >= maxComments
}

// verifyWrites reads back, anonymously, every post and comment
// acknowledged during the run. An error is retried; a 404 or a missing
// comment is a lost write.
func (g *generator) verifyWrites(ctx context.Context) *WritesSummary {
	g.mu.Lock()
	posts := slices.Clone(g.ackPosts)
	cmts := make(map[string][]string, len(g.ackCmts))
	var n int64
	for p, ids := range g.ackCmts {
		cmts[p] = slices.Clone(ids)
		n += int64(len(ids))
	}
	g.mu.Unlock()
	ws := &WritesSummary{Acknowledged: int64(len(posts)) + n}
	if ws.Acknowledged == 0 {
		return ws
	}
	began := time.Now()
	g.printf("reading back %d acknowledged writes", ws.Acknowledged)
	var mu sync.Mutex
	note := func(verified, lost, unverified int64, example string) {
		mu.Lock()
		defer mu.Unlock()
		ws.Verified += verified
		ws.Lost += lost
		ws.Unverified += unverified
		if example != "" && len(ws.Examples) < maxExamples {
			ws.Examples = append(ws.Examples, example)
		}
	}
	anon := &user{handle: "(anonymous)"}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, id := range posts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			found, res, _ := g.readBackRetry(ctx, anon, &write{postID: id})
			switch {
			case found:
				note(1, 0, 0, "")
			case res.status == http.StatusNotFound:
				note(0, 1, 0, "post "+id+" was acknowledged (201) and is gone (404)")
			default:
				note(0, 0, 1, "")
			}
		})
	}
	for postID, ids := range cmts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var out struct {
				Comments []postJSON `json:"comments"`
			}
			var res result
			for try := range 3 {
				res, _ = g.do(ctx, anon, OpVerify, time.Now(), http.MethodGet, "/api/v1/posts/"+url.PathEscape(postID)+"/comments", nil, &out)
				if res.ok() || res.status == http.StatusNotFound {
					break
				}
				time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
			}
			if !res.ok() && res.status != http.StatusNotFound {
				note(0, 0, int64(len(ids)), "")
				return
			}
			for _, id := range ids {
				switch {
				case slices.ContainsFunc(out.Comments, func(c postJSON) bool { return c.ID == id }):
					note(1, 0, 0, "")
				case len(out.Comments) >= maxComments:
					note(0, 0, 1, "")
				default:
					note(0, 1, 0, "comment "+id+" on post "+postID+" was acknowledged (201) and is not listed")
				}
			}
		})
	}
	wg.Wait()
	g.printf("read back %d acknowledged writes in %.1fs: %d lost", ws.Acknowledged, time.Since(began).Seconds(), ws.Lost)
	g.endLine()
	return ws
}

// readBackRetry is readBack with up to three tries while the answer is an
// error rather than a yes or a no.
func (g *generator) readBackRetry(ctx context.Context, u *user, w *write) (bool, result, bool) {
	var (
		found, full bool
		res         result
	)
	for try := range 3 {
		found, res, full = g.readBack(ctx, u, w, time.Now())
		if res.ok() || res.status == http.StatusNotFound {
			break
		}
		time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
	}
	return found, res, full
}

// take returns and clears u's write awaiting a read back.
func (u *user) take() *write {
	u.mu.Lock()
	defer u.mu.Unlock()
	w := u.last
	u.last = nil
	return w
}

// put records u's newest acknowledged write.
func (u *user) put(w *write) {
	u.mu.Lock()
	u.last = w
	u.mu.Unlock()
}

// putBack restores w unless u has written again since.
func (u *user) putBack(w *write) {
	u.mu.Lock()
	if u.last == nil {
		u.last = w
	}
	u.mu.Unlock()
}

// addPost adds a post id to the pool reads and comments pick from, with
// its author's handle ("" if not known), which tips avoid for the user
// that wrote it.
func (g *generator) addPost(id, author string) {
	if id == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if author != "" {
		g.authors[id] = author
	}
	if slices.Contains(g.posts[max(0, len(g.posts)-50):], id) {
		return // the feed's first page comes back again and again
	}
	g.posts = append(g.posts, id)
	if n := len(g.posts) - maxPosts; n > 0 {
		for _, old := range g.posts[:n] {
			delete(g.authors, old)
		}
		g.posts = slices.Delete(g.posts, 0, n)
	}
}

// addPosts adds the posts of a list the blog answered.
func (g *generator) addPosts(ps []postJSON) {
	for _, p := range ps {
		g.addPost(p.ID, p.Author)
	}
}

// postByOther returns a known post whose author is known and is not
// handle, newer ones more often, or "" after a few tries find none.
func (g *generator) postByOther(handle string) string {
	for range 8 {
		id := g.randomPost()
		if id == "" {
			return ""
		}
		g.mu.Lock()
		author := g.authors[id]
		g.mu.Unlock()
		if author != "" && author != handle {
			return id
		}
	}
	return ""
}

// randomPost returns a known post id, newer ones more often (as readers
// follow the home page), or "" if none is known.
func (g *generator) randomPost() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.posts)
	if n == 0 {
		return ""
	}
	if rand.IntN(2) == 0 {
		return g.posts[n-1-rand.IntN(min(n, 20))]
	}
	return g.posts[rand.IntN(n)]
}

// Content of posts and comments: Markdown of varied length, so that
// rendering and storage see realistic sizes.

// corpus is the vocabulary of generated text.
const corpus = `the a stack node cache edge replica primary load balancer request latency
	queue worker gossip cluster store write read page post comment user blog scale server client
	memory disk network packet retry timeout failover lease epoch log snapshot shard hash ring
	fast slow simple small large every some many quiet busy steady`

func (g *generator) sentence(n int) string {
	var b strings.Builder
	for i := range n {
		w := g.words[rand.IntN(len(g.words))]
		if i == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(w)
	}
	b.WriteByte('.')
	return b.String()
}

func (g *generator) title() string {
	s := g.sentence(3 + rand.IntN(6))
	return strings.TrimSuffix(s, ".")
}

func (g *generator) markdown() string {
	var b strings.Builder
	paras := 1 + rand.IntN(6)
	for i := range paras {
		if i > 0 && rand.IntN(3) == 0 {
			fmt.Fprintf(&b, "## %s\n\n", g.title())
		}
		for range 2 + rand.IntN(4) {
			b.WriteString(g.sentence(6+rand.IntN(14)) + " ")
		}
		b.WriteString("\n\n")
		if rand.IntN(5) == 0 {
			fmt.Fprintf(&b, "- %s\n- **%s**\n- `%s`\n\n", g.sentence(4), g.sentence(3), g.words[rand.IntN(len(g.words))])
		}
	}
	return b.String()
}

func (g *generator) tags() []string {
	all := []string{"go", "scaling", "databases", "caching", "networking", "ops", "design"}
	n := rand.IntN(3)
	out := make([]string, 0, n)
	for range n {
		t := all[rand.IntN(len(all))]
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
