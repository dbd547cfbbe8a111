// Package seed fills a blog with a corpus that reads like one, through its
// JSON API: authors with names and bios, posts of varied length in Markdown
// (sections, lists, code, links) on a few topics, tags, some cover images,
// comments and follows. The text comes from small files embedded from
// corpus/, put together by a generator seeded with --seed: the same seed
// and options give the same blog, and running the seed again skips what is
// there already, so it is safe to repeat or to resume. `node seed` calls Run.
package seed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"time"
)

// ErrWrongPassword is returned when a seeded handle exists with another
// password than Options.Password.
var ErrWrongPassword = errors.New("the account exists with another password")

// Options shapes the corpus. Zero fields take the defaults of DefaultOptions.
// A run is idempotent for the same options: what an earlier run with the
// same Seed wrote is found and skipped.
type Options struct {
	// Seed makes the corpus deterministic; another seed writes another set
	// of posts (by the same authors). Default 1.
	Seed uint64
	// Authors is the number of accounts. Default 12.
	Authors int
	// Posts is the number of posts, spread over the authors. Default 100.
	// A larger number than an earlier run's adds the missing posts.
	Posts int
	// MaxComments is the most comments one post gets (0 to this). Default 5.
	MaxComments int
	// Follows is how many other authors each author follows. Default 4.
	Follows int
	// ImageEvery gives every n-th post a generated cover image; 0 takes
	// the default 5, a negative value means no images.
	ImageEvery int
	// Drafts is the share of posts left unpublished, 0 to 1 (at most 10 per
	// author and seed). Default 0.08.
	Drafts float64
	// Password is every seeded account's password. Default DefaultPassword.
	Password string
	// Client sends the requests; nil means a client with a 30 s timeout.
	Client *http.Client
}

// DefaultPassword is the password of every seeded account unless
// Options.Password says otherwise.
const DefaultPassword = "seed-password"

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{Seed: 1, Authors: 12, Posts: 100, MaxComments: 5, Follows: 4, ImageEvery: 5, Drafts: 0.08, Password: DefaultPassword}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	if o.Authors <= 0 {
		o.Authors = d.Authors
	}
	if o.Posts < 0 {
		o.Posts = 0
	} else if o.Posts == 0 {
		o.Posts = d.Posts
	}
	if o.MaxComments <= 0 {
		o.MaxComments = d.MaxComments
	}
	if o.Follows <= 0 {
		o.Follows = d.Follows
	}
	if o.Follows > o.Authors-1 {
		o.Follows = o.Authors - 1
	}
	if o.ImageEvery == 0 {
		o.ImageEvery = d.ImageEvery
	}
	if o.Drafts <= 0 || o.Drafts >= 1 {
		o.Drafts = d.Drafts
	}
	if o.Password == "" {
		o.Password = d.Password
	}
	return o
}

// Summary counts what a run found and did.
type Summary struct {
	Authors, NewAuthors int // accounts used; those signed up by this run
	Handles             []string
	Posts               int // posts of the plan (Options.Posts)
	Written, Skipped    int // posts written by this run; found from an earlier one
	Published           int // posts of the plan that are published
	Comments            int // comments of the plan
	CommentsWritten     int // of which written by this run
	Images              int // covers uploaded by this run
	Follows             int // follows of the plan (following twice is one follow)
	Elapsed             time.Duration
}

// author is one seeded account with its own cookies.
type author struct {
	handle string
	http   *http.Client
	// wait reports a rate-limited request that will be retried.
	wait func(method, url string, d time.Duration)
}

// existing is what a seeded post looks like on the blog.
type existing struct {
	ID        string `json:"id"`
	Body      string `json:"body"`
	Published bool   `json:"published"`
	ImageURL  string `json:"image_url"`
}

type comment struct {
	Author string `json:"author"`
	Body   string `json:"body"`
}

// Run makes sure the blog at baseURL (e.g. http://127.0.0.1:8081) holds the
// corpus of opts, writing what is missing, and reports progress to progress
// (nil: none): a line per step and per tenth of the posts, and a summary
// that names the authors and their password.
func Run(ctx context.Context, baseURL string, opts Options, progress io.Writer) (Summary, error) {
	opts = opts.withDefaults()
	if progress == nil {
		progress = io.Discard
	}
	r := &run{opts: opts, base: strings.TrimRight(baseURL, "/"), progress: progress, start: time.Now()}
	r.sum.Posts = opts.Posts
	c, err := loadCorpus()
	if err != nil {
		return r.sum, err
	}
	plan := c.plan(opts)
	if err := r.join(ctx, c); err != nil {
		return r.sum, err
	}
	if err := r.follow(ctx); err != nil {
		return r.sum, err
	}
	// What earlier runs wrote, by key: every author's posts and drafts.
	have := map[string]existing{}
	for _, a := range r.authors {
		if err := a.seeded(ctx, r.base, have); err != nil {
			return r.sum, err
		}
	}
	step := max(10, (opts.Posts+9)/10)
	for n, p := range plan {
		if err := r.post(ctx, n, p, have); err != nil {
			return r.sum, err
		}
		if (n+1)%step == 0 || n+1 == len(plan) {
			r.printf("posts %d/%d (%d written, %d there already), %d comments written, %s",
				n+1, len(plan), r.sum.Written, r.sum.Skipped, r.sum.CommentsWritten, time.Since(r.start).Round(time.Millisecond))
		}
	}
	sum := &r.sum
	sum.Elapsed = time.Since(r.start)
	r.printf("done in %s: %d authors (%d new), %d posts (%d written, %d there already; %d published), %d comments (%d written), %d covers uploaded, %d follows",
		sum.Elapsed.Round(time.Millisecond), sum.Authors, sum.NewAuthors, sum.Posts, sum.Written, sum.Skipped, sum.Published,
		sum.Comments, sum.CommentsWritten, sum.Images, sum.Follows)
	r.printf("log in as %s (or any author listed above) with password %s", sum.Handles[0], opts.Password)
	return *sum, nil
}

// run is one Run in progress.
type run struct {
	opts     Options
	base     string
	progress io.Writer
	start    time.Time
	authors  []*author
	sum      Summary
}

func (r *run) printf(format string, args ...any) {
	fmt.Fprintf(r.progress, "seed: "+format+"\n", args...)
}

// join logs every author in, signing up those that are new.
func (r *run) join(ctx context.Context, c *corpus) error {
	wait := func(method, url string, d time.Duration) {
		r.printf("%s %s: rate limited (429), retrying in %s", method, url, d)
	}
	for i := range r.opts.Authors {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Timeout: 30 * time.Second}
		if r.opts.Client != nil {
			cl := *r.opts.Client
			hc = &cl
		}
		hc.Jar = jar
		a := &author{handle: c.handleFor(i), http: hc, wait: wait}
		isNew, err := a.join(ctx, r.base, r.opts.Password)
		if err != nil {
			return err
		}
		if isNew {
			r.sum.NewAuthors++
		}
		r.authors = append(r.authors, a)
		r.sum.Handles = append(r.sum.Handles, a.handle)
	}
	r.sum.Authors = len(r.authors)
	r.printf("%d authors ready (%d new): %s", len(r.authors), r.sum.NewAuthors, strings.Join(r.sum.Handles, ", "))
	return nil
}

// follow makes every planned follow; following twice is one follow.
func (r *run) follow(ctx context.Context) error {
	for i, fs := range follows(r.opts) {
		for _, j := range fs {
			if _, err := r.authors[i].call(ctx, "POST", r.base+"/api/v1/users/"+r.authors[j].handle+"/follow", nil, http.StatusNoContent); err != nil {
				return err
			}
			r.sum.Follows++
		}
	}
	r.printf("%d follows", r.sum.Follows)
	return nil
}

// post makes sure post n exists with its cover and comments: an earlier
// run may have written it, or part of it.
func (r *run) post(ctx context.Context, n int, p plannedPost, have map[string]existing) error {
	a := r.authors[p.author]
	got, existed := have[p.key]
	if existed {
		r.sum.Skipped++
	} else {
		raw, err := a.call(ctx, "POST", r.base+"/api/v1/posts", p.post, http.StatusCreated)
		if err != nil {
			return err
		}
		var out struct{ Post existing }
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("seed: decode post: %w", err)
		}
		got = out.Post
		r.sum.Written++
	}
	if p.cover && got.ImageURL == "" {
		if err := a.upload(ctx, r.base+"/api/v1/posts/"+got.ID+"/image", coverOf(r.opts.Seed, n)); err != nil {
			return err
		}
		r.sum.Images++
	}
	if !p.post.Published {
		return nil
	}
	r.sum.Published++
	r.sum.Comments += len(p.comments)
	written, err := commentOn(ctx, r.base, got.ID, existed, p.comments, r.authors)
	r.sum.CommentsWritten += written
	return err
}

// seeded adds the author's seeded posts, published and drafts, to have by key.
func (a *author) seeded(ctx context.Context, base string, have map[string]existing) error {
	for page := 1; page != 0; {
		raw, err := a.call(ctx, "GET", base+"/api/v1/users/"+a.handle+"?page="+strconv.Itoa(page), nil, http.StatusOK)
		if err != nil {
			return err
		}
		var out struct {
			Posts, Drafts []existing
			Next          int
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("seed: decode %s's posts: %w", a.handle, err)
		}
		for _, p := range append(out.Posts, out.Drafts...) {
			if k := keyOf(p.Body); k != "" {
				have[k] = p
			}
		}
		page = out.Next
	}
	return nil
}

// commentOn writes the planned comments that the post lacks. A post that
// was there already may hold some of them: each planned comment is matched
// to one with the same author and text.
func commentOn(ctx context.Context, base, id string, existed bool, plan []plannedComment, authors []*author) (int, error) {
	if len(plan) == 0 {
		return 0, nil
	}
	url := base + "/api/v1/posts/" + id + "/comments"
	there := map[comment]int{}
	if existed {
		raw, err := authors[0].call(ctx, "GET", url, nil, http.StatusOK)
		if err != nil {
			return 0, err
		}
		var out struct{ Comments []comment }
		if err := json.Unmarshal(raw, &out); err != nil {
			return 0, fmt.Errorf("seed: decode comments of %s: %w", id, err)
		}
		for _, c := range out.Comments {
			there[c]++
		}
	}
	written := 0
	for _, pc := range plan {
		a := authors[pc.author]
		if k := (comment{a.handle, pc.body}); there[k] > 0 {
			there[k]--
			continue
		}
		if _, err := a.call(ctx, "POST", url, map[string]string{"body": pc.body}, http.StatusCreated); err != nil {
			return written, err
		}
		written++
	}
	return written, nil
}

// join logs the author in, or signs them up if the handle is new, and says
// whether the account is new. It logs in first because the app allows
// fewer sign-ups than log-ins per address, and every run after the first
// finds its authors there.
func (a *author) join(ctx context.Context, base, password string) (bool, error) {
	body := map[string]string{"handle": a.handle, "email": a.handle + "@example.com", "password": password}
	_, err := a.call(ctx, "POST", base+"/api/v1/login", body, http.StatusOK)
	var se *statusError
	if !errors.As(err, &se) || se.code != http.StatusUnauthorized {
		return false, err
	}
	_, err = a.call(ctx, "POST", base+"/api/v1/signup", body, http.StatusCreated)
	if errors.As(err, &se) && se.code == http.StatusConflict {
		return false, fmt.Errorf("seed: log in as %s: %w", a.handle, ErrWrongPassword)
	}
	return err == nil, err
}

type statusError struct {
	method, url string
	code        int
	body        string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("seed: %s %s: status %d: %s", e.method, e.url, e.code, e.body)
}

// call sends v as JSON (nil: no body) and returns the answer's body, or an
// error unless the status is want.
func (a *author) call(ctx context.Context, method, url string, v any, want int) ([]byte, error) {
	var body []byte
	ctype := ""
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("seed: encode: %w", err)
		}
		body, ctype = b, "application/json"
	}
	return a.send(ctx, method, url, ctype, body, want)
}

// maxRateWait is how long one request keeps being retried while the app
// answers 429: past it, the app's limits are too tight for the seed.
const maxRateWait = 3 * time.Minute

// send sends one request, again after the Retry-After of each 429 (a
// request refused by a rate limit was not carried out).
func (a *author) send(ctx context.Context, method, url, ctype string, body []byte, want int) ([]byte, error) {
	deadline := time.Now().Add(maxRateWait)
	for {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("seed: %w", err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := a.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("seed: %s %s: %w", method, url, err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("seed: %s %s: %w", method, url, err)
		}
		if resp.StatusCode == want {
			return b, nil
		}
		serr := &statusError{method: method, url: url, code: resp.StatusCode, body: strings.TrimSpace(string(b))}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			return nil, serr
		}
		d := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			d = time.Duration(s) * time.Second
		}
		if a.wait != nil {
			a.wait(method, url, d)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("seed: %s %s: %w", method, url, ctx.Err())
		case <-t.C:
		}
	}
}

func (a *author) upload(ctx context.Context, url string, img []byte) error {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("image", "cover.png")
	if err == nil {
		_, err = fw.Write(img)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return fmt.Errorf("seed: build upload: %w", err)
	}
	_, err = a.send(ctx, "POST", url, mw.FormDataContentType(), buf.Bytes(), http.StatusOK)
	return err
}

// cover draws a 800×450 PNG: a two-colour gradient with soft bands, so
// covers differ and thumbnails have something to resize.
func cover(rng *rand.Rand) []byte {
	const w, h = 800, 450
	c1 := color.RGBA{uint8(rng.IntN(200) + 30), uint8(rng.IntN(200) + 30), uint8(rng.IntN(200) + 30), 255}
	c2 := color.RGBA{uint8(rng.IntN(200) + 30), uint8(rng.IntN(200) + 30), uint8(rng.IntN(200) + 30), 255}
	bands := 3 + rng.IntN(6)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			t := float64(x+y) / float64(w+h)
			if (x*bands/w+y*bands/h)%2 == 0 {
				t = t*0.8 + 0.1
			}
			mix := func(a, b uint8) uint8 { return uint8(float64(a)*(1-t) + float64(b)*t) }
			i := y*img.Stride + 4*x
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = mix(c1.R, c2.R), mix(c1.G, c2.G), mix(c1.B, c2.B), 255
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img) // encoding to memory cannot fail
	return buf.Bytes()
}
