// Package seed fills a fresh blog with a realistic corpus through its JSON
// API: authors, posts of varied length with Markdown, tags and some cover
// images, comments and follows. The same seed gives the same corpus, so a
// new stack is worth browsing and load runs are comparable. `node seed`
// calls Run.
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
	"strings"
	"time"
)

// Options shapes the corpus. Zero fields take the defaults of DefaultOptions.
type Options struct {
	// Seed makes the corpus deterministic. Default 1.
	Seed uint64
	// Authors is the number of accounts. Default 12.
	Authors int
	// Posts is the number of posts, spread over the authors. Default 100.
	Posts int
	// MaxComments is the most comments one post gets (0 to this). Default 5.
	MaxComments int
	// Follows is how many other authors each author follows. Default 4.
	Follows int
	// ImageEvery gives every n-th post a generated cover image; 0 takes
	// the default 5, a negative value means no images.
	ImageEvery int
	// Drafts is the share of posts left unpublished, 0 to 1. Default 0.08.
	Drafts float64
	// Password is every seeded account's password. Default "seed-password".
	Password string
	// Client sends the requests; nil means a client with a 30 s timeout.
	Client *http.Client
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{Seed: 1, Authors: 12, Posts: 100, MaxComments: 5, Follows: 4, ImageEvery: 5, Drafts: 0.08, Password: "seed-password"}
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

// author is one seeded account with its own cookies.
type author struct {
	handle string
	http   *http.Client
}

// Run fills the blog at baseURL (e.g. http://127.0.0.1:8081) and writes
// one line of progress per step to progress (nil: none). Authors that
// already exist are logged in to, so running it twice adds posts but no
// duplicate accounts.
func Run(ctx context.Context, baseURL string, opts Options, progress io.Writer) error {
	opts = opts.withDefaults()
	if progress == nil {
		progress = io.Discard
	}
	baseURL = strings.TrimRight(baseURL, "/")
	rng := rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed))
	start := time.Now()

	authors := make([]*author, opts.Authors)
	for i := range authors {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Timeout: 30 * time.Second}
		if opts.Client != nil {
			c := *opts.Client
			hc = &c
		}
		hc.Jar = jar
		a := &author{handle: handleFor(i), http: hc}
		if err := a.join(ctx, baseURL, opts.Password); err != nil {
			return err
		}
		authors[i] = a
	}
	fmt.Fprintf(progress, "seed: %d authors ready\n", len(authors))

	follows := 0
	for i, a := range authors {
		for _, j := range rng.Perm(len(authors))[:opts.Follows+1] {
			if j == i || follows >= (i+1)*opts.Follows {
				continue
			}
			if _, err := a.call(ctx, "POST", baseURL+"/api/v1/users/"+authors[j].handle+"/follow", nil, http.StatusNoContent); err != nil {
				return err
			}
			follows++
		}
	}
	fmt.Fprintf(progress, "seed: %d follows\n", follows)

	var published []string
	comments := 0
	for n := 0; n < opts.Posts; n++ {
		a := authors[rng.IntN(len(authors))]
		p := newPost(rng)
		p.Published = rng.Float64() >= opts.Drafts
		raw, err := a.call(ctx, "POST", baseURL+"/api/v1/posts", p, http.StatusCreated)
		if err != nil {
			return err
		}
		var out struct {
			Post struct {
				ID string `json:"id"`
			} `json:"post"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return fmt.Errorf("seed: decode post: %w", err)
		}
		if opts.ImageEvery > 0 && n%opts.ImageEvery == 0 {
			if err := a.upload(ctx, baseURL+"/api/v1/posts/"+out.Post.ID+"/image", cover(rng)); err != nil {
				return err
			}
		}
		if p.Published {
			published = append(published, out.Post.ID)
			for k := rng.IntN(opts.MaxComments + 1); k > 0; k-- {
				c := authors[rng.IntN(len(authors))]
				body := map[string]string{"body": sentence(rng, 6+rng.IntN(20))}
				if _, err := c.call(ctx, "POST", baseURL+"/api/v1/posts/"+out.Post.ID+"/comments", body, http.StatusCreated); err != nil {
					return err
				}
				comments++
			}
		}
		if (n+1)%10 == 0 || n+1 == opts.Posts {
			fmt.Fprintf(progress, "seed: posts %d/%d, %d comments, %s\n", n+1, opts.Posts, comments, time.Since(start).Round(time.Millisecond))
		}
	}
	fmt.Fprintf(progress, "seed: done: %d authors, %d posts (%d published), %d comments, %d follows in %s\n",
		len(authors), opts.Posts, len(published), comments, follows, time.Since(start).Round(time.Millisecond))
	return nil
}

// join signs the author up, or logs in if the handle exists.
func (a *author) join(ctx context.Context, base, password string) error {
	body := map[string]string{"handle": a.handle, "email": a.handle + "@example.com", "password": password}
	_, err := a.call(ctx, "POST", base+"/api/v1/signup", body, http.StatusCreated)
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusConflict {
		_, err = a.call(ctx, "POST", base+"/api/v1/login", body, http.StatusOK)
	}
	return err
}

type statusError struct {
	method, url string
	code        int
	body        string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("seed: %s %s: status %d: %s", e.method, e.url, e.code, e.body)
}

// call sends v as JSON and returns the body, or an error unless the status
// is want.
func (a *author) call(ctx context.Context, method, url string, v any, want int) ([]byte, error) {
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("seed: encode: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return a.send(req, want)
}

func (a *author) send(req *http.Request, want int) ([]byte, error) {
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("seed: %s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("seed: %s %s: %w", req.Method, req.URL, err)
	}
	if resp.StatusCode != want {
		return nil, &statusError{method: req.Method, url: req.URL.String(), code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	return b, nil
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
	req, err := http.NewRequestWithContext(ctx, "POST", url, &buf)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	_, err = a.send(req, http.StatusOK)
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
