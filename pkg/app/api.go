package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// MaxQuery is the longest search query accepted, in bytes.
const MaxQuery = 200

func (w *web) routes(mux *http.ServeMux) {
	// JSON API (docs/api.md).
	mux.HandleFunc("POST /api/v1/signup", w.apiSignup)
	mux.HandleFunc("POST /api/v1/login", w.apiLogin)
	mux.HandleFunc("POST /api/v1/logout", w.apiLogout)
	mux.HandleFunc("GET /api/v1/me", w.apiMe)
	mux.HandleFunc("GET /api/v1/posts", w.apiFeed)
	mux.HandleFunc("POST /api/v1/posts", w.apiCreatePost)
	mux.HandleFunc("GET /api/v1/posts/{id}", w.apiGetPost)
	mux.HandleFunc("PUT /api/v1/posts/{id}", w.apiUpdatePost)
	mux.HandleFunc("DELETE /api/v1/posts/{id}", w.apiDeletePost)
	mux.HandleFunc("POST /api/v1/posts/{id}/image", w.apiUploadImage)
	mux.HandleFunc("GET /api/v1/posts/{id}/comments", w.apiComments)
	mux.HandleFunc("POST /api/v1/posts/{id}/comments", w.apiAddComment)
	mux.HandleFunc("GET /api/v1/users/{handle}", w.apiUser)
	mux.HandleFunc("POST /api/v1/users/{handle}/follow", w.apiFollow)
	mux.HandleFunc("DELETE /api/v1/users/{handle}/follow", w.apiUnfollow)
	mux.HandleFunc("GET /api/v1/feed/following", w.apiFollowing)
	mux.HandleFunc("GET /api/v1/notifications", w.apiNotifications)
	mux.HandleFunc("GET /api/v1/search", w.apiSearch)
	mux.HandleFunc("GET /api/v1/tags/{tag}", w.apiTag)
	w.paymentRoutes(mux) // payments_web.go: its API routes and its pages
	mux.HandleFunc("/api/", func(rw http.ResponseWriter, r *http.Request) {
		w.fail(rw, r, http.StatusNotFound, "no such API route", "")
	})

	// HTML pages.
	mux.HandleFunc("GET /{$}", w.pageHome)
	mux.HandleFunc("GET /p/{id}", w.pagePost)
	mux.HandleFunc("GET /u/{handle}", w.pageAuthor)
	mux.HandleFunc("GET /t/{tag}", w.pageTag)
	mux.HandleFunc("GET /search", w.pageSearch)
	mux.HandleFunc("GET /following", w.pageFollowing)
	mux.HandleFunc("GET /notifications", w.pageNotifications)
	mux.HandleFunc("GET /signup", w.pageSignup)
	mux.HandleFunc("POST /signup", w.formSignup)
	mux.HandleFunc("GET /login", w.pageLogin)
	mux.HandleFunc("POST /login", w.formLogin)
	mux.HandleFunc("POST /logout", w.formLogout)
	mux.HandleFunc("GET /new", w.pageNew)
	mux.HandleFunc("POST /new", w.formNew)
	mux.HandleFunc("GET /p/{id}/edit", w.pageEdit)
	mux.HandleFunc("POST /p/{id}/edit", w.formEdit)
	mux.HandleFunc("POST /p/{id}/delete", w.formDelete)
	mux.HandleFunc("POST /p/{id}/comments", w.formComment)
	mux.HandleFunc("POST /u/{handle}/follow", w.formFollow)
	mux.HandleFunc("POST /u/{handle}/unfollow", w.formUnfollow)

	// Content-addressed files: cached for a year.
	mux.HandleFunc("GET /media/{name}", w.serveMedia)
	mux.HandleFunc("GET /static/{name}", w.serveStatic)

	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		w.fail(rw, r, http.StatusNotFound, "not found", "")
	})
}

// pageParam reads ?page=N (default 1). ok is false if it is not a number
// from 1 to 10000.
func pageParam(r *http.Request) (int, bool) {
	s := r.URL.Query().Get("page")
	if s == "" {
		return 1, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 10000 {
		return 0, false
	}
	return n, true
}

// authed returns the session or answers 401, or 503 when the session
// could not be read (the user is not logged out by a store outage).
func (w *web) authed(rw http.ResponseWriter, r *http.Request) *Session {
	s, err := w.viewer(r)
	switch {
	case err != nil:
		w.error(rw, r, err)
	case s == nil:
		w.fail(rw, r, http.StatusUnauthorized, "log in first", "")
	}
	return s
}

// visiblePost returns a post the viewer may see: published, or their own.
func (w *web) visiblePost(ctx context.Context, r *http.Request, id string) (posts.Post, error) {
	p, err := w.svc.Posts.Get(ctx, id)
	if err != nil {
		return posts.Post{}, err
	}
	if !p.Published {
		s, err := w.viewer(r)
		if err != nil {
			return posts.Post{}, err
		}
		if s == nil || s.UserID != p.AuthorID {
			return posts.Post{}, svc.ErrNotFound
		}
	}
	return p, nil
}

// ownPost returns a post the session's user may change, or an error
// mapping to 404 or 403.
func (w *web) ownPost(ctx context.Context, s *Session, id string) (posts.Post, error) {
	p, err := w.svc.Posts.Get(ctx, id)
	if err != nil {
		return posts.Post{}, err
	}
	if p.AuthorID != s.UserID {
		if !p.Published {
			return posts.Post{}, svc.ErrNotFound
		}
		return posts.Post{}, svc.ErrForbidden
	}
	return p, nil
}

func postKeys(ps ...posts.Post) []string {
	var keys []string
	for _, p := range ps {
		keys = append(keys, "post-"+p.ID)
		if k := "author-" + p.Author; !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

func (w *web) apiSignup(rw http.ResponseWriter, r *http.Request) {
	var in struct {
		Handle   string `json:"handle"`
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	if !w.readJSON(rw, r, &in) || !w.allow(rw, r, actSignup, "") {
		return
	}
	u, err := w.signup(r, in.Handle, in.Email, in.Password)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	if err := w.startSession(rw, r, u); err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusCreated, map[string]any{"user": userJSON{ID: u.ID, Handle: u.Handle, Email: u.Email, CreatedAt: u.CreatedAt}})
}

func (w *web) signup(r *http.Request, handle, email, password string) (accounts.User, error) {
	ctx, welcome := causes(w, r.Context(), func(u accounts.User) []Job {
		return []Job{NewJob(JobWelcome, WelcomePayload{UserID: u.ID, Handle: u.Handle, Email: u.Email})}
	})
	u, err := w.svc.Accounts.SignUp(ctx, handle, email, password)
	if err != nil {
		return u, err
	}
	w.committed(r.Context(), welcome)
	return u, nil
}

func (w *web) apiLogin(rw http.ResponseWriter, r *http.Request) {
	var in struct {
		Handle   string `json:"handle"`
		Password string `json:"password"`
	}
	if !w.readJSON(rw, r, &in) {
		return
	}
	switch {
	case in.Handle == "":
		w.fail(rw, r, http.StatusBadRequest, "handle is required", "handle")
		return
	case in.Password == "":
		w.fail(rw, r, http.StatusBadRequest, "password is required", "password")
		return
	}
	if !w.allow(rw, r, actLogin, loginAccount(in.Handle)) {
		return
	}
	u, err := w.svc.Accounts.Authenticate(r.Context(), in.Handle, in.Password)
	w.loginDone(in.Handle, err)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	if err := w.startSession(rw, r, u); err != nil {
		w.error(rw, r, err)
		return
	}
	info, err := w.userInfo(r.Context(), u, true)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"user": info})
}

func (w *web) apiLogout(rw http.ResponseWriter, r *http.Request) {
	if err := w.endSession(rw, r); err != nil {
		w.error(rw, r, err)
		return
	}
	rw.WriteHeader(http.StatusNoContent)
}

func (w *web) apiMe(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	u, err := w.svc.Accounts.User(r.Context(), s.UserID)
	if err == nil {
		var info userJSON
		if info, err = w.userInfo(r.Context(), u, true); err == nil {
			w.writeJSON(rw, http.StatusOK, map[string]any{"user": info})
			return
		}
	}
	if errors.Is(err, svc.ErrNotFound) {
		w.fail(rw, r, http.StatusUnauthorized, "log in first", "")
		return
	}
	w.error(rw, r, err)
}

func (w *web) apiFeed(rw http.ResponseWriter, r *http.Request) {
	page, ok := pageParam(r)
	if !ok {
		w.fail(rw, r, http.StatusBadRequest, "page must be a number from 1 to 10000", "page")
		return
	}
	ps, more, err := w.svc.Posts.Feed(r.Context(), page, w.cfg.PageSize)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	next := 0
	if more {
		next = page + 1
	}
	w.api(rw, r, http.StatusOK, map[string]any{"posts": toPostsJSON(ps), "page": page, "next": next},
		cacheInfo{Keys: append([]string{"home"}, postKeys(ps...)...)})
}

// postInput is the JSON body of creating or editing a post; absent fields
// are nil (kept as they are on edit).
type postInput struct {
	Title     *string   `json:"title"`
	Body      *string   `json:"body"`
	Tags      *[]string `json:"tags"`
	Published *bool     `json:"published"`
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (w *web) apiCreatePost(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil || !w.allow(rw, r, actPost, s.UserID) {
		return
	}
	var in postInput
	if !w.readJSON(rw, r, &in) {
		return
	}
	published := in.Published == nil || *in.Published
	p, err := w.createPost(r, s, deref(in.Title), deref(in.Body), deref(in.Tags), published)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusCreated, map[string]any{"post": toPostJSON(p)})
}

func (w *web) createPost(r *http.Request, s *Session, title, body string, tags []string, published bool) (posts.Post, error) {
	ctx, jobs := causes(w, r.Context(), postChangeJobs(false))
	p, err := w.svc.Posts.Create(ctx, posts.Draft{AuthorID: s.UserID, Author: s.Handle,
		Title: title, Body: body, Tags: tags, Published: published})
	if err != nil {
		return p, err
	}
	w.noteWrite(r)
	w.committed(r.Context(), jobs)
	return p, nil
}

// updatePost changes a post and runs the side effects of the change.
// wasPublished is whether the post was published before.
func (w *web) updatePost(r *http.Request, id string, patch posts.Patch, wasPublished bool) (posts.Post, error) {
	ctx, jobs := causes(w, r.Context(), postChangeJobs(wasPublished))
	p, err := w.svc.Posts.Update(ctx, id, patch)
	if err != nil {
		return p, err
	}
	w.noteWrite(r)
	w.committed(r.Context(), jobs)
	return p, nil
}

// postChangeJobs returns the side effects of a new or changed post: search
// indexing always, follower notifications when it has just been published.
func postChangeJobs(wasPublished bool) func(posts.Post) []Job {
	return func(p posts.Post) []Job {
		jobs := []Job{NewJob(JobIndex, PostPayload{PostID: p.ID})}
		if p.Published && !wasPublished {
			jobs = append(jobs, NewJob(JobNotifyFollowers, PostPayload{PostID: p.ID}))
		}
		return jobs
	}
}

func (w *web) apiGetPost(rw http.ResponseWriter, r *http.Request) {
	p, err := w.visiblePost(r.Context(), r, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.enqueue(r.Context(), NewJob(JobView, PostPayload{PostID: p.ID}))
	w.api(rw, r, http.StatusOK, map[string]any{"post": toPostJSON(p)}, cacheInfo{Keys: postKeys(p), Private: !p.Published})
}

func (w *web) apiUpdatePost(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	old, err := w.ownPost(r.Context(), s, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	var in postInput
	if !w.readJSON(rw, r, &in) {
		return
	}
	p, err := w.updatePost(r, old.ID, posts.Patch{Title: in.Title, Body: in.Body, Tags: in.Tags, Published: in.Published}, old.Published)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"post": toPostJSON(p)})
}

func (w *web) apiDeletePost(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	if err := w.deletePost(r, s, r.PathValue("id")); err != nil {
		w.error(rw, r, err)
		return
	}
	rw.WriteHeader(http.StatusNoContent)
}

func (w *web) deletePost(r *http.Request, s *Session, id string) error {
	p, err := w.ownPost(r.Context(), s, id)
	if err != nil {
		return err
	}
	ctx, index := causes(w, r.Context(), func(p posts.Post) []Job {
		return []Job{NewJob(JobIndex, PostPayload{PostID: p.ID})}
	})
	if err := w.svc.Posts.Delete(ctx, p.ID); err != nil {
		return err
	}
	// The post is gone for readers now; its comments go next. If that
	// fails, orphans are unreachable and harmless.
	if err := w.svc.Comments.DeleteForPost(r.Context(), p.ID); err != nil {
		w.log.WarnContext(r.Context(), "app: delete comments of deleted post", "post", p.ID, "err", err)
	}
	w.noteWrite(r)
	w.committed(r.Context(), index)
	return nil
}

// readImage reads the "image" part of a multipart request. ok=false with a
// nil error means no file was sent.
func (w *web) readImage(rw http.ResponseWriter, r *http.Request) ([]byte, bool, error) {
	f, _, err := r.FormFile("image")
	if errors.Is(err, http.ErrMissingFile) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, media.MaxBytes+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) == 0 {
		return nil, false, nil
	}
	if len(data) > media.MaxBytes {
		return nil, false, &svc.FieldError{Field: "image", Msg: "must be at most 5 MB", Err: svc.ErrTooLarge}
	}
	return data, true, nil
}

// parseMultipart bounds and parses a multipart body; it answers and
// returns false when the request is not one or is too large.
func (w *web) parseMultipart(rw http.ResponseWriter, r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		w.fail(rw, r, http.StatusUnsupportedMediaType, "send the image as multipart/form-data with a field named image", "image")
		return false
	}
	r.Body = http.MaxBytesReader(rw, r.Body, MaxUploadBody)
	// Everything fits in memory (MaxUploadBody), so no temporary files.
	if err := r.ParseMultipartForm(MaxUploadBody); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.fail(rw, r, http.StatusRequestEntityTooLarge, "the upload is over the limit of 5 MB", "image")
			return false
		}
		w.fail(rw, r, http.StatusBadRequest, "malformed multipart body", "")
		return false
	}
	return true
}

// attachImage stores an image and makes it the post's cover.
func (w *web) attachImage(r *http.Request, p posts.Post, data []byte) (posts.Post, error) {
	m, err := w.svc.Media.Put(r.Context(), data)
	if err != nil {
		return p, err
	}
	if p.Image == m.Name {
		return p, nil
	}
	empty := ""
	ctx, thumb := causes(w, r.Context(), func(p posts.Post) []Job {
		return []Job{NewJob(JobThumbnail, ImagePayload{PostID: p.ID, Image: m.Name})}
	})
	p, err = w.svc.Posts.Update(ctx, p.ID, posts.Patch{Image: &m.Name, Thumb: &empty})
	if err != nil {
		return p, err
	}
	w.noteWrite(r)
	w.committed(r.Context(), thumb)
	// With inline jobs the thumbnail exists now; read it back to show it.
	if q, err := w.svc.Posts.Get(r.Context(), p.ID); err == nil {
		p = q
	}
	return p, nil
}

func (w *web) apiUploadImage(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	p, err := w.ownPost(r.Context(), s, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	if !w.parseMultipart(rw, r) {
		return
	}
	data, ok, err := w.readImage(rw, r)
	if err == nil && !ok {
		err = svc.Invalid("image", "is required")
	}
	if err == nil {
		p, err = w.attachImage(r, p, data)
	}
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"post": toPostJSON(p)})
}

func (w *web) apiComments(rw http.ResponseWriter, r *http.Request) {
	p, err := w.visiblePost(r.Context(), r, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	cs, err := w.svc.Comments.List(r.Context(), p.ID)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	out := make([]commentJSON, len(cs))
	for i, c := range cs {
		out[i] = toCommentJSON(c)
	}
	w.api(rw, r, http.StatusOK, map[string]any{"comments": out}, cacheInfo{Keys: postKeys(p), Private: !p.Published})
}

func (w *web) addComment(r *http.Request, s *Session, postID, body string) (comments.Comment, error) {
	p, err := w.visiblePost(r.Context(), r, postID)
	if err != nil {
		return comments.Comment{}, err
	}
	ctx, added := causes(w, r.Context(), func(c comments.Comment) []Job {
		return []Job{NewJob(JobCommentAdded, CommentPayload{PostID: c.PostID, CommentID: c.ID, AuthorID: c.AuthorID, Author: c.Author})}
	})
	c, err := w.svc.Comments.Create(ctx, p.ID, s.UserID, s.Handle, body)
	if err != nil {
		return c, err
	}
	w.noteWrite(r)
	w.committed(r.Context(), added)
	return c, nil
}

func (w *web) apiAddComment(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil || !w.allow(rw, r, actComment, s.UserID) {
		return
	}
	var in struct {
		Body string `json:"body"`
	}
	if !w.readJSON(rw, r, &in) {
		return
	}
	c, err := w.addComment(r, s, r.PathValue("id"), in.Body)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusCreated, map[string]any{"comment": toCommentJSON(c)})
}

func (w *web) apiUser(rw http.ResponseWriter, r *http.Request) {
	page, ok := pageParam(r)
	if !ok {
		w.fail(rw, r, http.StatusBadRequest, "page must be a number from 1 to 10000", "page")
		return
	}
	u, err := w.svc.Accounts.UserByHandle(r.Context(), r.PathValue("handle"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	s := w.session(r)
	self := s != nil && s.UserID == u.ID
	info, err := w.userInfo(r.Context(), u, self)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	ps, more, err := w.svc.Posts.ByAuthor(r.Context(), u.ID, page, w.cfg.PageSize)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	next := 0
	if more {
		next = page + 1
	}
	out := map[string]any{"user": info, "posts": toPostsJSON(ps), "page": page, "next": next}
	if self && page == 1 {
		// The author's own page lists their drafts too, as the HTML page
		// does; a session's answer is private, so no cache sees them.
		drafts, err := w.svc.Posts.Drafts(r.Context(), u.ID, 50)
		if err != nil {
			w.error(rw, r, err)
			return
		}
		out["drafts"] = toPostsJSON(drafts)
	}
	w.api(rw, r, http.StatusOK, out, cacheInfo{Keys: append([]string{"author-" + u.Handle}, postKeys(ps...)...)})
}

func (w *web) follow(r *http.Request, s *Session, handle string, on bool) (accounts.User, error) {
	u, err := w.svc.Accounts.UserByHandle(r.Context(), handle)
	if err != nil {
		return u, err
	}
	if on {
		err = w.svc.Accounts.Follow(r.Context(), s.UserID, u.ID)
	} else {
		err = w.svc.Accounts.Unfollow(r.Context(), s.UserID, u.ID)
	}
	if err == nil {
		w.noteWrite(r)
	}
	return u, err
}

func (w *web) apiFollow(rw http.ResponseWriter, r *http.Request) {
	if s := w.authed(rw, r); s != nil {
		if _, err := w.follow(r, s, r.PathValue("handle"), true); err != nil {
			w.error(rw, r, err)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}
}

func (w *web) apiUnfollow(rw http.ResponseWriter, r *http.Request) {
	if s := w.authed(rw, r); s != nil {
		if _, err := w.follow(r, s, r.PathValue("handle"), false); err != nil {
			w.error(rw, r, err)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}
}

// Following-feed bounds: authors read, and posts shown.
const (
	maxFeedAuthors = 100
	feedSize       = 30
)

// followingFeed merges the latest posts of the authors s follows.
func (w *web) followingFeed(ctx context.Context, s *Session) ([]posts.Post, error) {
	authors, err := w.svc.Accounts.Following(ctx, s.UserID)
	if err != nil {
		return nil, err
	}
	if len(authors) > maxFeedAuthors {
		authors = authors[:maxFeedAuthors]
	}
	var all []posts.Post
	for _, a := range authors {
		ps, _, err := w.svc.Posts.ByAuthor(ctx, a, 1, w.cfg.PageSize)
		if err != nil {
			return nil, err
		}
		all = append(all, ps...)
	}
	slices.SortFunc(all, func(a, b posts.Post) int { return b.PublishedAt.Compare(a.PublishedAt) })
	if len(all) > feedSize {
		all = all[:feedSize]
	}
	return all, nil
}

func (w *web) apiFollowing(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	ps, err := w.followingFeed(r.Context(), s)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"posts": toPostsJSON(ps)})
}

func (w *web) apiNotifications(rw http.ResponseWriter, r *http.Request) {
	s := w.authed(rw, r)
	if s == nil {
		return
	}
	ns, err := w.svc.Notifications.List(r.Context(), s.UserID, 0)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.writeJSON(rw, http.StatusOK, map[string]any{"notifications": ns})
}

// Search results shown at most.
const maxResults = 50

func (w *web) search(ctx context.Context, q string) ([]posts.Post, error) {
	if len(q) > MaxQuery {
		return nil, svc.Invalid("q", "must be at most %d bytes", MaxQuery)
	}
	if strings.TrimSpace(q) == "" {
		return nil, nil
	}
	idList, err := w.svc.Search.Query(ctx, q, maxResults)
	if err != nil && unavailable(err) {
		return nil, fmt.Errorf("%w: %w", errSearchDown, err)
	}
	if err != nil {
		return nil, err
	}
	ps, err := w.svc.Posts.Many(ctx, idList)
	if err != nil {
		return nil, err
	}
	// The index may lag a change; never show what is not public.
	return slices.DeleteFunc(ps, func(p posts.Post) bool { return !p.Published }), nil
}

func (w *web) apiSearch(rw http.ResponseWriter, r *http.Request) {
	ps, err := w.search(r.Context(), r.URL.Query().Get("q"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.api(rw, r, http.StatusOK, map[string]any{"posts": toPostsJSON(ps)}, cacheInfo{Keys: []string{"search"}})
}

func (w *web) apiTag(rw http.ResponseWriter, r *http.Request) {
	page, ok := pageParam(r)
	if !ok {
		w.fail(rw, r, http.StatusBadRequest, "page must be a number from 1 to 10000", "page")
		return
	}
	tag, valid := posts.NormalizeTag(r.PathValue("tag"))
	if !valid {
		w.fail(rw, r, http.StatusNotFound, "not found", "")
		return
	}
	ps, more, err := w.svc.Posts.ByTag(r.Context(), tag, page, w.cfg.PageSize)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	next := 0
	if more {
		next = page + 1
	}
	w.api(rw, r, http.StatusOK, map[string]any{"posts": toPostsJSON(ps), "page": page, "next": next},
		cacheInfo{Keys: append([]string{"tag-" + tag}, postKeys(ps...)...)})
}
