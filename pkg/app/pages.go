package app

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/scalestack/scalestack/pkg/app/media"
	"github.com/scalestack/scalestack/pkg/app/posts"
	"github.com/scalestack/scalestack/pkg/app/svc"
)

// Form posts answer with 303 See Other to a page (post/redirect/get), or
// re-render the form with messages beside the fields.

func (w *web) pageHome(rw http.ResponseWriter, r *http.Request) {
	page, ok := pageParam(r)
	if !ok {
		w.fail(rw, r, http.StatusNotFound, "not found", "")
		return
	}
	d := w.data(r, "")
	d.Heading, d.Desc = "Latest posts", "Latest posts on the scalestack blog"
	if page > 1 {
		d.Title = "Page " + strconv.Itoa(page)
	}
	d.Empty = "No posts yet. Be the first to write one."
	keys, err := w.postList(r, feedHome, "", page, d, func(ctx context.Context) ([]posts.Post, bool, error) {
		return w.svc.Posts.Feed(ctx, page, w.cfg.PageSize)
	})
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.noteCount(r, d)
	w.render(rw, r, http.StatusOK, "home", d, cacheInfo{Keys: append([]string{"home"}, keys...)})
}

// optionalWait bounds a call for a part of a page that the page can do
// without (the notification count): a slow service costs the page at
// most this, not the call's whole deadline.
const optionalWait = time.Second

// noteCountMax bounds the notifications read for the count: past it the
// count shows "9+", so that the home page costs a short read.
const noteCountMax = 10

// noteCount shows the viewer's notification count beside the
// Notifications link, when there is a viewer. The notifications service
// being down (or slow, past optionalWait) leaves the count out: the page
// renders without it.
func (w *web) noteCount(r *http.Request, d *pageData) {
	if d.Viewer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), optionalWait)
	defer cancel()
	ns, err := w.svc.Notifications.List(ctx, d.Viewer.UserID, noteCountMax)
	switch {
	case err != nil:
		// Debug: an outage is logged where it is seen first (the rpc
		// client's breaker, the store client), not once per page.
		w.log.DebugContext(r.Context(), "app: notification count left out", "err", err)
	case len(ns) >= noteCountMax:
		d.NoteCount = strconv.Itoa(noteCountMax-1) + "+"
	case len(ns) > 0:
		d.NoteCount = strconv.Itoa(len(ns))
	}
}

// postList puts a feed page's post list into d: from the cache tier's
// rendered fragment when the cache is on and the page is one it keeps,
// otherwise from load, rendered with the page. It returns the Surrogate-Key
// tags of the posts listed. The fragment is the same for every viewer: it
// holds the cards, the empty message (d.Empty) and the pager.
func (w *web) postList(r *http.Request, kind, scope string, page int, d *pageData,
	load func(context.Context) ([]posts.Post, bool, error)) ([]string, error) {
	d.Page = page
	if !w.fragments || !w.keys.cached(page, w.cfg.PageSize) {
		ps, more, err := load(r.Context())
		if err != nil {
			return nil, err
		}
		w.paged(d, ps, page, more)
		return postKeys(ps...), nil
	}
	raw, _, err := w.a.tier.Fetch(r.Context(), w.keys.frag(kind, scope, page), func(ctx context.Context) ([]byte, error) {
		ps, more, err := load(ctx)
		if err != nil {
			return nil, err
		}
		ld := &pageData{PageURL: d.PageURL, Empty: d.Empty}
		w.paged(ld, ps, page, more)
		// First line: the surrogate keys; then the HTML.
		var buf bytes.Buffer
		buf.WriteString(strings.Join(postKeys(ps...), " "))
		buf.WriteByte('\n')
		if err := w.pages["list"].ExecuteTemplate(&buf, "postlist", ld); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	})
	if err != nil {
		return nil, err
	}
	keys, html, _ := bytes.Cut(raw, []byte{'\n'})
	d.PostList = template.HTML(html) // rendered by our own template from escaped data
	return strings.Fields(string(keys)), nil
}

func (w *web) paged(d *pageData, ps []posts.Post, page int, more bool) {
	d.Posts, d.Page = toViews(ps), page
	if page > 1 {
		d.Prev = page - 1
	}
	if more {
		d.Next = page + 1
	}
}

func (w *web) pagePost(rw http.ResponseWriter, r *http.Request) {
	p, err := w.visiblePost(r.Context(), r, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.enqueue(r.Context(), NewJob(JobView, PostPayload{PostID: p.ID}))
	w.showPost(rw, r, http.StatusOK, p, w.data(r, p.Title))
}

// showPost renders a post page (also with a comment form's errors). When
// the comments cannot be read for an outage, the post is shown without
// them, saying so, and the page is not cached anywhere.
func (w *web) showPost(rw http.ResponseWriter, r *http.Request, code int, p posts.Post, d *pageData) {
	cs, err := w.svc.Comments.List(r.Context(), p.ID)
	if err != nil && (!unavailable(err) || clientGone(r)) {
		w.error(rw, r, err)
		return
	}
	if err != nil {
		w.log.DebugContext(r.Context(), "app: post shown without its comments", "post", p.ID, "err", err)
		d.CommentsDown = true
	}
	v := toView(p)
	d.Post, d.Comments, d.Desc = &v, cs, p.Excerpt
	d.Owner = d.Viewer != nil && d.Viewer.UserID == p.AuthorID
	w.payPost(r, d, p)
	w.render(rw, r, code, "post", d, cacheInfo{Keys: postKeys(p), Private: !p.Published || d.CommentsDown})
}

func (w *web) pageAuthor(rw http.ResponseWriter, r *http.Request) {
	page, ok := pageParam(r)
	if !ok {
		w.fail(rw, r, http.StatusNotFound, "not found", "")
		return
	}
	u, err := w.svc.Accounts.UserByHandle(r.Context(), r.PathValue("handle"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	d := w.data(r, "@"+u.Handle)
	d.Owner = d.Viewer != nil && d.Viewer.UserID == u.ID
	info, err := w.userInfo(r.Context(), u, d.Owner)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	d.User = &info
	w.payProfile(r, d, u.ID)
	d.Empty = "@" + u.Handle + " has not published anything yet."
	keys, err := w.postList(r, feedAuthor, u.ID, page, d, func(ctx context.Context) ([]posts.Post, bool, error) {
		return w.svc.Posts.ByAuthor(ctx, u.ID, page, w.cfg.PageSize)
	})
	if err != nil {
		w.error(rw, r, err)
		return
	}
	if d.Viewer != nil && !d.Owner {
		if d.Follows, err = w.svc.Accounts.IsFollowing(r.Context(), d.Viewer.UserID, u.ID); err != nil {
			w.error(rw, r, err)
			return
		}
	}
	if d.Owner && page == 1 {
		drafts, err := w.svc.Posts.Drafts(r.Context(), u.ID, 50)
		if err != nil {
			w.error(rw, r, err)
			return
		}
		d.Drafts = toViews(drafts)
	}
	w.render(rw, r, http.StatusOK, "author", d, cacheInfo{Keys: append([]string{"author-" + u.Handle}, keys...)})
}

func (w *web) pageTag(rw http.ResponseWriter, r *http.Request) {
	page, ok := pageParam(r)
	tag, valid := posts.NormalizeTag(r.PathValue("tag"))
	if !ok || !valid {
		w.fail(rw, r, http.StatusNotFound, "not found", "")
		return
	}
	d := w.data(r, "#"+tag)
	d.Heading = "Posts tagged #" + tag
	keys, err := w.postList(r, feedTag, tag, page, d, func(ctx context.Context) ([]posts.Post, bool, error) {
		return w.svc.Posts.ByTag(ctx, tag, page, w.cfg.PageSize)
	})
	if err != nil {
		w.error(rw, r, err)
		return
	}
	w.render(rw, r, http.StatusOK, "list", d, cacheInfo{Keys: append([]string{"tag-" + tag}, keys...)})
}

func (w *web) pageSearch(rw http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("q")
	d := w.data(r, "Search")
	d.Q = q
	ps, err := w.search(r.Context(), q)
	if errors.Is(err, errSearchDown) && !clientGone(r) {
		// The rest of the page (and of the site) works: say so, as a page,
		// and let no cache keep it.
		w.log.DebugContext(r.Context(), "app: search page without search", "err", err)
		d.SearchDown = true
		w.render(rw, r, http.StatusOK, "search", d, cacheInfo{Private: true})
		return
	}
	if code, handled := formErrors(d, err); err != nil && handled {
		d.Q = ""
		w.render(rw, r, code, "search", d, cacheInfo{Private: true})
		return
	} else if err != nil {
		w.error(rw, r, err)
		return
	}
	d.Posts = toViews(ps)
	d.Empty = "No posts match all of those words."
	w.render(rw, r, http.StatusOK, "search", d, cacheInfo{Keys: []string{"search"}})
}

// needLogin sends an anonymous visitor to the login page, then back; a
// user whose session could not be read gets 503, not the login page.
func (w *web) needLogin(rw http.ResponseWriter, r *http.Request) *Session {
	s, err := w.viewer(r)
	switch {
	case err != nil:
		w.error(rw, r, err)
	case s == nil:
		rw.Header().Set("Cache-Control", "private, no-store")
		http.Redirect(rw, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	}
	return s
}

func (w *web) pageFollowing(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil {
		return
	}
	ps, err := w.followingFeed(r.Context(), s)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	d := w.data(r, "Following")
	d.Heading, d.Posts = "From authors you follow", toViews(ps)
	d.Empty = "Nothing yet: follow authors from their pages to see their posts here."
	w.render(rw, r, http.StatusOK, "list", d, cacheInfo{Private: true})
}

func (w *web) pageNotifications(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil {
		return
	}
	ns, err := w.svc.Notifications.List(r.Context(), s.UserID, 0)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	d := w.data(r, "Notifications")
	d.Notes = ns
	w.render(rw, r, http.StatusOK, "notifications", d, cacheInfo{Private: true})
}

// parseForm bounds and parses a url-encoded form; it answers and returns
// false if the body is not one or is too large.
func (w *web) parseForm(rw http.ResponseWriter, r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		w.fail(rw, r, http.StatusUnsupportedMediaType, "send the form as application/x-www-form-urlencoded", "")
		return false
	}
	r.Body = http.MaxBytesReader(rw, r.Body, MaxFormBody)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.error(rw, r, err)
			return false
		}
		w.fail(rw, r, http.StatusBadRequest, "malformed form", "")
		return false
	}
	return true
}

// localPath returns next if it is a path on this site, else "/": a login
// link must not be able to send people to another site. Browsers are
// lenient with what they are given in Location: they drop tabs and line
// breaks ("/\t/evil.example" becomes "//evil.example", another host), read
// a backslash as "/", and some intermediaries decode the path once more. So next
// must be printable ASCII without spaces or backslashes, start with
// exactly one "/", name no scheme or host, and still be a path on this site
// once its path is percent-decoded.
func localPath(next string) string {
	if !isLocalPath(next) {
		return "/"
	}
	return next
}

func isLocalPath(next string) bool {
	if len(next) == 0 || len(next) > 2048 || next[0] != '/' {
		return false
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	path, _, _ := strings.Cut(next, "?")
	path, _, _ = strings.Cut(path, "#")
	decoded, err := url.PathUnescape(path)
	if err != nil || strings.HasPrefix(decoded, "//") {
		return false
	}
	for i := 0; i < len(decoded); i++ {
		if c := decoded[i]; c < ' ' || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

func (w *web) pageSignup(rw http.ResponseWriter, r *http.Request) {
	w.render(rw, r, http.StatusOK, "signup", w.data(r, "Sign up"), cacheInfo{Private: true})
}

func (w *web) formSignup(rw http.ResponseWriter, r *http.Request) {
	if !w.parseForm(rw, r) || !w.allow(rw, r, actSignup, "") {
		return
	}
	d := w.data(r, "Sign up")
	d.Form["handle"], d.Form["email"] = r.PostForm.Get("handle"), r.PostForm.Get("email")
	u, err := w.signup(r, r.PostForm.Get("handle"), r.PostForm.Get("email"), r.PostForm.Get("password"))
	if err == nil {
		err = w.startSession(rw, r, u)
	}
	if err != nil {
		if code, ok := formErrors(d, err); ok {
			w.render(rw, r, code, "signup", d, cacheInfo{Private: true})
			return
		}
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, "/u/"+u.Handle, http.StatusSeeOther)
}

func (w *web) pageLogin(rw http.ResponseWriter, r *http.Request) {
	d := w.data(r, "Log in")
	d.Form["next"] = localPath(r.URL.Query().Get("next"))
	w.render(rw, r, http.StatusOK, "login", d, cacheInfo{Private: true})
}

func (w *web) formLogin(rw http.ResponseWriter, r *http.Request) {
	if !w.parseForm(rw, r) {
		return
	}
	d := w.data(r, "Log in")
	handle, password := r.PostForm.Get("handle"), r.PostForm.Get("password")
	d.Form["handle"], d.Form["next"] = handle, localPath(r.PostForm.Get("next"))
	var err error
	switch {
	case handle == "":
		err = svc.Invalid("handle", "is required")
	case password == "":
		err = svc.Invalid("password", "is required")
	default:
		if !w.allow(rw, r, actLogin, loginAccount(handle)) {
			return
		}
		u, aerr := w.svc.Accounts.Authenticate(r.Context(), handle, password)
		w.loginDone(handle, aerr)
		if err = aerr; err == nil {
			err = w.startSession(rw, r, u)
		}
	}
	if err != nil {
		if code, ok := formErrors(d, err); ok {
			w.render(rw, r, code, "login", d, cacheInfo{Private: true})
			return
		}
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, d.Form["next"], http.StatusSeeOther)
}

func (w *web) formLogout(rw http.ResponseWriter, r *http.Request) {
	if err := w.endSession(rw, r); err != nil {
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, "/", http.StatusSeeOther)
}

func (w *web) pageNew(rw http.ResponseWriter, r *http.Request) {
	if w.needLogin(rw, r) == nil {
		return
	}
	d := w.data(r, "Write")
	d.Form["published"] = "1"
	w.render(rw, r, http.StatusOK, "edit", d, cacheInfo{Private: true})
}

// splitTags reads the comma- or space-separated tags field of a form.
func splitTags(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

func (w *web) postForm(d *pageData, r *http.Request) {
	for _, k := range []string{"title", "body", "tags", "published"} {
		d.Form[k] = r.PostForm.Get(k)
	}
}

func (w *web) formNew(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil || !w.allow(rw, r, actPost, s.UserID) || !w.parseMultipart(rw, r) {
		return
	}
	d := w.data(r, "Write")
	w.postForm(d, r)
	data, hasImage, err := w.readImage(rw, r)
	if err == nil && hasImage {
		// Check the image before creating the post, so a bad file leaves
		// no half-made post behind.
		_, err = w.svc.Media.Put(r.Context(), data)
	}
	var p posts.Post
	if err == nil {
		p, err = w.createPost(r, s, d.Form["title"], d.Form["body"], splitTags(d.Form["tags"]), d.Form["published"] != "")
	}
	if err == nil && hasImage {
		p, err = w.attachImage(r, p, data)
	}
	if err != nil {
		if code, ok := formErrors(d, err); ok {
			w.render(rw, r, code, "edit", d, cacheInfo{Private: true})
			return
		}
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, "/p/"+p.ID, http.StatusSeeOther)
}

func (w *web) pageEdit(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil {
		return
	}
	p, err := w.ownPost(r.Context(), s, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	d := w.data(r, "Edit "+p.Title)
	v := toView(p)
	d.Post = &v
	d.Form["title"], d.Form["body"], d.Form["tags"] = p.Title, p.Body, strings.Join(p.Tags, ", ")
	if p.Published {
		d.Form["published"] = "1"
	}
	w.render(rw, r, http.StatusOK, "edit", d, cacheInfo{Private: true})
}

func (w *web) formEdit(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil {
		return
	}
	old, err := w.ownPost(r.Context(), s, r.PathValue("id"))
	if err != nil {
		w.error(rw, r, err)
		return
	}
	if !w.parseMultipart(rw, r) {
		return
	}
	d := w.data(r, "Edit "+old.Title)
	v := toView(old)
	d.Post = &v
	w.postForm(d, r)
	data, hasImage, err := w.readImage(rw, r)
	if err == nil && hasImage {
		_, err = w.svc.Media.Put(r.Context(), data)
	}
	p := old
	if err == nil {
		tags, published := splitTags(d.Form["tags"]), d.Form["published"] != ""
		title, body := d.Form["title"], d.Form["body"]
		p, err = w.updatePost(r, old.ID, posts.Patch{Title: &title, Body: &body, Tags: &tags, Published: &published}, old.Published)
	}
	if err == nil {
		if hasImage {
			p, err = w.attachImage(r, p, data)
		}
	}
	if err != nil {
		if code, ok := formErrors(d, err); ok {
			w.render(rw, r, code, "edit", d, cacheInfo{Private: true})
			return
		}
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, "/p/"+p.ID, http.StatusSeeOther)
}

func (w *web) formDelete(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil || !w.parseForm(rw, r) {
		return
	}
	if err := w.deletePost(r, s, r.PathValue("id")); err != nil {
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, "/u/"+s.Handle, http.StatusSeeOther)
}

func (w *web) formComment(rw http.ResponseWriter, r *http.Request) {
	s := w.needLogin(rw, r)
	if s == nil || !w.allow(rw, r, actComment, s.UserID) || !w.parseForm(rw, r) {
		return
	}
	id := r.PathValue("id")
	body := r.PostForm.Get("body")
	c, err := w.addComment(r, s, id, body)
	if err != nil {
		d := w.data(r, "")
		if code, ok := formErrors(d, err); ok {
			p, perr := w.visiblePost(r.Context(), r, id)
			if perr != nil {
				w.error(rw, r, perr)
				return
			}
			d.Title, d.Form["body"] = p.Title, body
			w.showPost(rw, r, code, p, d)
			return
		}
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, "/p/"+id+"#c-"+c.ID, http.StatusSeeOther)
}

func (w *web) formFollow(rw http.ResponseWriter, r *http.Request)   { w.formFollowing(rw, r, true) }
func (w *web) formUnfollow(rw http.ResponseWriter, r *http.Request) { w.formFollowing(rw, r, false) }

func (w *web) formFollowing(rw http.ResponseWriter, r *http.Request, on bool) {
	s := w.needLogin(rw, r)
	if s == nil || !w.parseForm(rw, r) {
		return
	}
	u, err := w.follow(r, s, r.PathValue("handle"), on)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	http.Redirect(rw, r, "/u/"+u.Handle, http.StatusSeeOther)
}

// immutable is the cache policy of content-addressed URLs: a new version
// has a new URL, so a cached copy never needs checking.
const immutable = "public, max-age=31536000, immutable"

func (w *web) serveMedia(rw http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !media.ValidName(name) {
		w.fail(rw, r, http.StatusNotFound, "not found", "")
		return
	}
	etag := `"` + name + `"`
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		rw.Header().Set("Cache-Control", immutable)
		rw.Header().Set("ETag", etag)
		rw.WriteHeader(http.StatusNotModified)
		return
	}
	m, data, err := w.svc.Media.Get(r.Context(), name)
	if err != nil {
		w.error(rw, r, err)
		return
	}
	h := rw.Header()
	h.Set("Content-Type", m.Type)
	h.Set("Cache-Control", immutable)
	h.Set("ETag", etag)
	h.Set("Content-Length", strconv.Itoa(len(data)))
	rw.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = rw.Write(data)
	}
}

func (w *web) serveStatic(rw http.ResponseWriter, r *http.Request) {
	a, ok := w.assets[r.PathValue("name")]
	if !ok {
		w.fail(rw, r, http.StatusNotFound, "not found", "")
		return
	}
	h := rw.Header()
	h.Set("Cache-Control", immutable)
	h.Set("ETag", a.etag)
	if etagMatch(r.Header.Get("If-None-Match"), a.etag) {
		rw.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.ctype)
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	rw.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = rw.Write(a.body)
	}
}
