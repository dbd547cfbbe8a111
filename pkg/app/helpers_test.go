package app_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/app/apptest"
	"github.com/scalestack/scalestack/pkg/store"
	"github.com/scalestack/scalestack/pkg/store/boltdb"
)

// stack is an app served by httptest over a store, or (URL set, Server
// nil) an app opened on its own listener.
type stack struct {
	App    *app.App
	Server *httptest.Server
	URL    string
	Store  store.Store
	Outbox string
}

// openDB opens a real store database in a temporary directory.
func openDB(tb testing.TB) *boltdb.DB {
	tb.Helper()
	db, err := boltdb.Open(filepath.Join(tb.TempDir(), "store.db"), boltdb.Options{})
	if err != nil {
		tb.Fatalf("boltdb.Open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// newStack starts the app over the real boltdb.DB.
func newStack(tb testing.TB, edit ...func(*app.Config, *app.Deps)) *stack {
	tb.Helper()
	return newStackOn(tb, openDB(tb), edit...)
}

// newMemStack starts the app over the in-memory store.
func newMemStack(tb testing.TB, edit ...func(*app.Config, *app.Deps)) (*stack, *apptest.MemStore) {
	tb.Helper()
	ms := apptest.NewMemStore()
	return newStackOn(tb, ms, edit...), ms
}

func newStackOn(tb testing.TB, st store.Store, edit ...func(*app.Config, *app.Deps)) *stack {
	tb.Helper()
	cfg := app.DefaultConfig()
	deps := app.Deps{Store: st}
	cfg.NodeName = "app-test"
	cfg.DataDir = tb.TempDir()
	cfg.BcryptCost = bcrypt.MinCost
	for _, e := range edit {
		e(&cfg, &deps)
	}
	a, err := app.New(cfg, deps)
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	tb.Cleanup(srv.Close)
	return &stack{App: a, Server: srv, Store: st, Outbox: filepath.Join(cfg.DataDir, "outbox")}
}

// client is one browser or API user with its own cookies.
type client struct {
	tb   testing.TB
	base string
	http *http.Client
}

func (s *stack) client(tb testing.TB) *client {
	tb.Helper()
	jar, _ := cookiejar.New(nil)
	base := s.URL
	if s.Server != nil {
		base = s.Server.URL
	}
	return &client{tb: tb, base: base, http: &http.Client{
		Jar: jar,
		// Let tests see redirects themselves.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// response is a finished HTTP exchange.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

func (r response) String() string { return string(r.Body) }

// JSON decodes the body into a map.
func (r response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("decode JSON %q: %v", r.Body, err)
	}
	return m
}

// do sends a request; header pairs are name, value.
func (c *client) do(method, path, ctype string, body io.Reader, header ...string) response {
	c.tb.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.tb.Fatalf("new request: %v", err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.tb.Fatalf("read %s %s: %v", method, path, err)
	}
	return response{Code: resp.StatusCode, Header: resp.Header, Body: b}
}

func (c *client) get(path string, header ...string) response {
	c.tb.Helper()
	return c.do(http.MethodGet, path, "", nil, header...)
}

// json sends v as a JSON body (nil: no body).
func (c *client) json(method, path string, v any, header ...string) response {
	c.tb.Helper()
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			c.tb.Fatalf("encode: %v", err)
		}
		body = bytes.NewReader(b)
	}
	return c.do(method, path, "application/json", body, header...)
}

// form posts url-encoded fields, given as name, value pairs.
func (c *client) form(path string, fields ...string) response {
	c.tb.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(fields); i += 2 {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(urlEscape(fields[i]) + "=" + urlEscape(fields[i+1]))
	}
	return c.do(http.MethodPost, path, "application/x-www-form-urlencoded", strings.NewReader(b.String()))
}

func urlEscape(s string) string {
	return strings.NewReplacer("%", "%25", "&", "%26", "=", "%3D", "+", "%2B", " ", "+", "#", "%23", "\n", "%0A").Replace(s)
}

// multipart posts fields and, if file is not nil, a file part named image.
func (c *client) multipart(path string, file []byte, fields ...string) response {
	c.tb.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("image", "cover.png")
		_, _ = fw.Write(file)
	}
	_ = mw.Close()
	return c.do(http.MethodPost, path, mw.FormDataContentType(), &buf)
}

// want fails the test unless r has status code.
func want(tb testing.TB, what string, r response, code int) {
	tb.Helper()
	if r.Code != code {
		tb.Fatalf("%s: status %d, want %d; body %.300s", what, r.Code, code, r.Body)
	}
}

// signup makes an account over the API and keeps its cookie.
func (c *client) signup(handle string) map[string]any {
	c.tb.Helper()
	r := c.json("POST", "/api/v1/signup", map[string]string{"handle": handle, "email": handle + "@example.com", "password": "correct horse"})
	want(c.tb, "signup "+handle, r, http.StatusCreated)
	return r.JSON(c.tb)["user"].(map[string]any)
}

// post creates a published post over the API and returns its JSON.
func (c *client) post(title, body string, tags ...string) map[string]any {
	c.tb.Helper()
	if tags == nil {
		tags = []string{}
	}
	r := c.json("POST", "/api/v1/posts", map[string]any{"title": title, "body": body, "tags": tags, "published": true})
	want(c.tb, "create post "+title, r, http.StatusCreated)
	return r.JSON(c.tb)["post"].(map[string]any)
}

// pngImage returns a w×h PNG with a gradient, so it is a real picture.
func pngImage(tb testing.TB, w, h int) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	// Fill Pix directly: Set through an interface per pixel is slow under -race.
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			copy(row[4*x:], []byte{uint8(x * 255 / w), uint8(y * 255 / h), 160, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		tb.Fatalf("encode png: %v", err)
	}
	return buf.Bytes()
}

type appConfig = app.Config

type appDeps = app.Deps

func filepathGlob(dir, pattern string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, pattern))
}

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// newLogger sends the app's logs to the test log.
func newLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func url(s string) (*neturl.URL, error) { return neturl.Parse(s) }
