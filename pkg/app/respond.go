package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/app/accounts"
	"github.com/scalestack/scalestack/pkg/app/comments"
	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/notify"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// sessionCookie names the cookie holding the session id.
const sessionCookie = "blog_session"

// session returns the logged-in session of r, or nil. It is read once per
// request. A session that could not be read (the store is failing over and
// did not come back within the sessions' read window) is not a logout: it
// is nil here, for the parts of a page that only show who is logged in,
// and the error is kept for viewer, so that whatever depends on the user
// answers 503 rather than 401 or a page for a stranger.
func (w *web) session(r *http.Request) *Session {
	st := state(r.Context())
	if st.sessLoaded {
		return st.sess
	}
	st.sessLoaded = true
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil
	}
	s, err := w.a.sessions.Get(r.Context(), c.Value)
	switch {
	case errors.Is(err, ErrNoSession):
		if err != ErrNoSession { // wrapped: the record is damaged, not missing
			w.log.WarnContext(r.Context(), "app: unreadable session; treated as none", "err", err)
		}
		return nil
	case err != nil:
		st.sessErr = err // w.error logs it if it becomes the answer
		return nil
	}
	st.sess = &s
	return st.sess
}

// viewer returns the logged-in session of r (nil when there is none), or
// the error that kept it from being read.
func (w *web) viewer(r *http.Request) (*Session, error) {
	s := w.session(r)
	return s, state(r.Context()).sessErr
}

// secure reports whether the client reached us over TLS (directly or at a
// proxy in front), so the cookie must be Secure.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (w *web) startSession(rw http.ResponseWriter, r *http.Request, u accounts.User) error {
	s := Session{ID: NewSessionID(), UserID: u.ID, Handle: u.Handle,
		Expires: time.Now().Add(w.cfg.SessionTTL)}
	_, s.LastLSNs = state(r.Context()).trace.Seen()
	if err := w.a.sessions.Put(r.Context(), s); err != nil {
		return err
	}
	http.SetCookie(rw, &http.Cookie{Name: sessionCookie, Value: s.ID, Path: "/", Expires: s.Expires,
		MaxAge: int(w.cfg.SessionTTL.Seconds()), HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure(r)})
	st := state(r.Context())
	st.sess, st.sessLoaded, st.sessErr = &s, true, nil
	return nil
}

func (w *web) endSession(rw http.ResponseWriter, r *http.Request) error {
	s, err := w.viewer(r)
	if err != nil {
		// Clearing the cookie alone would leave the session valid in the
		// store: the user is told to try again instead.
		return err
	}
	if s != nil {
		if err := w.a.sessions.Delete(r.Context(), s.ID); err != nil {
			return err
		}
	}
	http.SetCookie(rw, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure(r)})
	st := state(r.Context())
	st.sess, st.sessLoaded, st.sessErr = nil, true, nil
	return nil
}

// noteWrite keeps the LSN of the user's latest write in each store group
// in the session, for read-your-writes at the replication stage.
func (w *web) noteWrite(r *http.Request) {
	s := w.session(r)
	if s == nil {
		return
	}
	_, seen := state(r.Context()).trace.Seen()
	lsns := s.LastLSNs.Merge(seen)
	if maps.Equal(lsns, s.LastLSNs) {
		return
	}
	s.LastLSNs = lsns
	if err := w.a.sessions.Put(r.Context(), *s); err != nil {
		level := slog.LevelWarn
		if clientGone(r) {
			level = slog.LevelDebug // the user is gone; their next read is not coming
		}
		w.log.Log(r.Context(), level, "app: save session LSN", "err", err)
	}
}

// enqueue hands a side effect to the job runner. A failed side effect does
// not fail the request that caused it: the post is saved even if its
// search indexing is not; the queue stage retries such jobs.
//
// With a queue (the relay is set), a job reaching here was caused by no
// write (a view; see causes for those that were): the relay publishes it
// after the answer, best effort, since a view lost while the queue is down
// is not worth delaying any response for. A gateway (remote services)
// enqueues nothing else: its views go the same way, with no outbox behind
// them, so a view made while the queue is down, or past the relay's
// backlog, is not counted; that is the price of a counter nobody's money
// or mail depends on.
func (w *web) enqueue(ctx context.Context, j Job) {
	j = j.Traced(ctx)
	if w.a.relay != nil {
		w.a.relay.publishSoon(j, false)
		return
	}
	if err := w.a.jobs.Enqueue(ctx, j); err != nil {
		w.jobsFailed.Add(1)
		level := slog.LevelWarn
		if errors.Is(ctx.Err(), context.Canceled) {
			// A view counted in the request of a client that went away:
			// not worth a warning. (Jobs of a write never get here with
			// a canceled context: see committed.)
			level = slog.LevelDebug
		}
		w.log.Log(ctx, level, "app: job failed", "kind", j.Kind, "id", j.ID, "err", err)
		return
	}
	w.jobsDone.Add(1)
}

// cacheInfo says how a response may be cached.
type cacheInfo struct {
	// Keys are Surrogate-Key tags, so the CDN can purge by post or author.
	Keys []string
	// Private forces private, no-store even for anonymous readers.
	Private bool
}

// finish sets the cache headers and writes body, answering 304 when the
// client's copy is current. Anonymous readers of public content get a
// short shared freshness (s-maxage) and an ETag; anything for a logged-in
// user is private and not stored.
func (w *web) finish(rw http.ResponseWriter, r *http.Request, code int, ctype string, body []byte, ci cacheInfo) {
	if _, err := w.viewer(r); err != nil {
		// The answer was made as for a stranger: a logged-in user would
		// see themselves logged out, and a shared cache might keep it.
		w.error(rw, r, err)
		return
	}
	h := rw.Header()
	h.Set("Content-Type", ctype)
	if ci.Private || w.session(r) != nil || code != http.StatusOK {
		h.Set("Cache-Control", "private, no-store")
	} else {
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:12]) + `"`
		h.Set("Cache-Control", "public, max-age=0, s-maxage=10")
		h.Set("Vary", "Cookie")
		h.Set("ETag", etag)
		if len(ci.Keys) > 0 {
			h.Set("Surrogate-Key", strings.Join(ci.Keys, " "))
		}
		if etagMatch(r.Header.Get("If-None-Match"), etag) {
			rw.WriteHeader(http.StatusNotModified)
			return
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rw.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = rw.Write(body)
	}
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func (w *web) writeJSON(rw http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		w.log.Error("app: encode JSON", "err", err)
		code, body = http.StatusInternalServerError, []byte(`{"error":"something went wrong on our side; it has been logged"}`)
	}
	rw.Header().Set("Content-Type", "application/json")
	if rw.Header().Get("Cache-Control") == "" {
		rw.Header().Set("Cache-Control", "private, no-store")
	}
	rw.WriteHeader(code)
	_, _ = rw.Write(append(body, '\n'))
}

// api writes a JSON API answer with the cache policy of ci.
func (w *web) api(rw http.ResponseWriter, r *http.Request, code int, v any, ci cacheInfo) {
	body, err := json.Marshal(v)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.finish(rw, r, code, "application/json", append(body, '\n'), ci)
}

// readJSON decodes a JSON request body of at most MaxJSONBody bytes.
func (w *web) readJSON(rw http.ResponseWriter, r *http.Request, v any) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		w.fail(rw, r, http.StatusUnsupportedMediaType, "send the body as application/json", "")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(rw, r.Body, MaxJSONBody))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.error(rw, r, err)
			return false
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			w.fail(rw, r, http.StatusBadRequest, "invalid JSON: "+ute.Field+" has the wrong type", ute.Field)
			return false
		}
		w.fail(rw, r, http.StatusBadRequest, "invalid JSON body", "")
		return false
	}
	if dec.More() {
		w.fail(rw, r, http.StatusBadRequest, "invalid JSON body: more than one value", "")
		return false
	}
	return true
}

// JSON shapes of the API (docs/api.md).

type userJSON struct {
	ID        string    `json:"id"`
	Handle    string    `json:"handle"`
	Email     string    `json:"email,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Followers int       `json:"followers"`
	Following int       `json:"following"`
}

type postJSON struct {
	ID        string    `json:"id"`
	Author    string    `json:"author"`
	Title     string    `json:"title"`
	Body      string    `json:"body"`
	HTML      string    `json:"html"`
	Excerpt   string    `json:"excerpt"`
	Tags      []string  `json:"tags"`
	Published bool      `json:"published"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Views     int64     `json:"views"`
	Comments  int       `json:"comments"`
	ImageURL  string    `json:"image_url"`
	ThumbURL  string    `json:"thumb_url"`
}

type commentJSON struct {
	ID        string    `json:"id"`
	PostID    string    `json:"post_id"`
	Author    string    `json:"author"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

func mediaURL(name string) string {
	if name == "" {
		return ""
	}
	return "/media/" + name
}

func toPostJSON(p posts.Post) postJSON {
	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	return postJSON{ID: p.ID, Author: p.Author, Title: p.Title, Body: p.Body, HTML: p.HTML, Excerpt: p.Excerpt,
		Tags: tags, Published: p.Published, CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
		Views: p.Views, Comments: p.Comments, ImageURL: mediaURL(p.Image), ThumbURL: mediaURL(p.Thumb)}
}

func toPostsJSON(ps []posts.Post) []postJSON {
	out := make([]postJSON, len(ps))
	for i, p := range ps {
		out[i] = toPostJSON(p)
	}
	return out
}

func toCommentJSON(c comments.Comment) commentJSON {
	return commentJSON{ID: c.ID, PostID: c.PostID, Author: c.Author, Body: c.Body, CreatedAt: c.CreatedAt}
}

// userInfo returns a user with follower counts; the e-mail only for self.
func (w *web) userInfo(ctx context.Context, u accounts.User, self bool) (userJSON, error) {
	followers, err := w.svc.Accounts.Followers(ctx, u.ID)
	if err != nil {
		return userJSON{}, err
	}
	following, err := w.svc.Accounts.Following(ctx, u.ID)
	if err != nil {
		return userJSON{}, err
	}
	j := userJSON{ID: u.ID, Handle: u.Handle, CreatedAt: u.CreatedAt, Followers: len(followers), Following: len(following)}
	if self {
		j.Email = u.Email
	}
	return j, nil
}

// postView is a post as the templates show it.
type postView struct {
	posts.Post
	HTML     template.HTML
	ImageURL string
	ThumbURL string
}

func toView(p posts.Post) postView {
	// The HTML was rendered by goldmark with raw HTML escaped and unsafe
	// link schemes dropped (posts.Markdown), so it is trusted here.
	return postView{Post: p, HTML: template.HTML(p.HTML), ImageURL: mediaURL(p.Image), ThumbURL: mediaURL(p.Thumb)}
}

func toViews(ps []posts.Post) []postView {
	out := make([]postView, len(ps))
	for i, p := range ps {
		out[i] = toView(p)
	}
	return out
}

// limits are shown in forms.
type limits struct {
	Title, Tags, Comment, ImageMB int
}

// pageData is what every template gets.
type pageData struct {
	Title, Desc, Heading, Sub, Empty string
	Viewer                           *Session
	Node, CSS, JS, Icon              string
	Q                                string
	Form                             map[string]string
	Errors                           map[string]string
	Error                            string
	Limits                           limits
	// ViewerUnknown: the request's session could not be read (a store
	// outage), so the page offers neither the user's links nor "Log in".
	ViewerUnknown bool

	Posts []postView
	// PostList, when set, is the post list already rendered (a fragment
	// from the cache tier); the templates show it instead of Posts.
	PostList         template.HTML
	Page, Prev, Next int
	PageURL          string
	Post             *postView
	Owner            bool
	Comments         []comments.Comment
	User             *userJSON
	Follows          bool
	Drafts           []postView
	Notes            []notify.Notification
	// NoteCount is the viewer's notification count shown beside the
	// Notifications link ("" shows none: no viewer, none, or the
	// notifications service did not answer).
	NoteCount string
	// SearchDown: the search service is unavailable; the search page says
	// so instead of listing results.
	SearchDown bool
	// CommentsDown: a post's comments could not be read; the post page
	// shows the post and says so.
	CommentsDown bool
	// Pay is the tip form, the supporter badge (payments_web.go).
	Pay *payView
}

func (w *web) data(r *http.Request, title string) *pageData {
	viewer, err := w.viewer(r)
	return &pageData{
		Title: title, Viewer: viewer, ViewerUnknown: err != nil, Node: w.cfg.NodeName,
		CSS: w.assetURL["style.css"], JS: w.assetURL["app.js"], Icon: w.assetURL["icon.svg"],
		Form: map[string]string{}, Errors: map[string]string{}, PageURL: "?",
		Limits: limits{Title: posts.MaxTitle, Tags: posts.MaxTags, Comment: comments.MaxBody, ImageMB: media.MaxBytes >> 20},
	}
}

// render executes page into a buffer (so a template error becomes a clean
// 500, not half a page) and finishes the response.
func (w *web) render(rw http.ResponseWriter, r *http.Request, code int, page string, d *pageData, ci cacheInfo) {
	var buf bytes.Buffer
	if err := w.pages[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		w.error(rw, r, err)
		return
	}
	w.finish(rw, r, code, "text/html; charset=utf-8", buf.Bytes(), ci)
}

// formErrors turns a validation error into messages beside form fields;
// other errors are returned for the caller to answer.
func formErrors(d *pageData, err error) (int, bool) {
	code, msg, field := classify(err)
	if code >= 500 || code == http.StatusNotFound || code == http.StatusForbidden {
		return 0, false
	}
	var fe *svc.FieldError
	if errors.As(err, &fe) {
		d.Errors[fe.Field] = "The " + fe.Field + " " + fe.Msg + "."
		return code, true
	}
	if field != "" {
		d.Errors[field] = msg
	} else {
		d.Error = msg
	}
	return code, true
}
