package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/scalestack/scalestack/pkg/app/seed"
)

// The browser test drives the real pages in headless Chromium.
//
//	SCALESTACK_NO_BROWSER=1   opt out on a machine without Chromium (the test
//	                          then skips, saying so); CI installs chromium.
//	SCALESTACK_SCREENSHOTS=1  rewrite docs/img/home.png and docs/img/post.png;
//	                          otherwise screenshots go to a temporary folder.
//	SCALESTACK_CHROMIUM=path  the browser to run (default: chromium on PATH).
func TestBrowserSignUpWriteAndRead(t *testing.T) {
	if os.Getenv("SCALESTACK_NO_BROWSER") == "1" {
		t.Skip("SCALESTACK_NO_BROWSER=1: browser test opted out")
	}
	browser := os.Getenv("SCALESTACK_CHROMIUM")
	if browser == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				browser = p
				break
			}
		}
	}
	if browser == "" {
		t.Fatalf("no Chromium found: install it (apt-get install chromium), point SCALESTACK_CHROMIUM at it, or set SCALESTACK_NO_BROWSER=1 to opt out")
	}
	outDir := t.TempDir()
	if os.Getenv("SCALESTACK_SCREENSHOTS") == "1" {
		outDir = filepath.Join("..", "..", "docs", "img")
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
	}

	s := newStack(t)
	// A few authors and posts first, so the home page looks like a blog.
	if _, err := seed.Run(context.Background(), s.Server.URL, seed.Options{Seed: 3, Authors: 5, Posts: 9, ImageEvery: 3, Follows: 2}, nil); err != nil {
		t.Fatalf("seed: %v", err)
	}
	cover := filepath.Join(t.TempDir(), "cover.png")
	if err := os.WriteFile(cover, pngImage(t, 960, 480), 0o644); err != nil {
		t.Fatalf("write cover: %v", err)
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	base := s.Server.URL
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(outDir, name), png, 0o644); err != nil {
			t.Fatalf("save screenshot: %v", err)
		}
		t.Logf("screenshot %s (%d bytes)", filepath.Join(outDir, name), len(png))
	}

	step("sign up",
		chromedp.Navigate(base+"/signup"),
		chromedp.SendKeys("#handle", "browser"),
		chromedp.SendKeys("#email", "browser@example.com"),
		chromedp.SendKeys("#password", "correct horse battery"),
		chromedp.Click(`form[action="/signup"] button[type=submit]`),
		chromedp.WaitVisible(".profile h1"),
	)
	if h, err := chromedp.Run(ctx, chromedp.Text(".profile h1")); err != nil || h != "@browser" {
		t.Fatalf("after sign-up the profile says %q (%v), want @browser", h, err)
	}

	step("write a post with an image",
		chromedp.Navigate(base+"/new"),
		chromedp.SendKeys("#title", "Hello from a real browser"),
		chromedp.SendKeys("#body", "This post was written by **headless Chromium**.\n\n- signed up\n- uploaded a cover\n- published"),
		chromedp.SendKeys("#tags", "browser, testing"),
		chromedp.SetUploadFiles("#image", []string{cover}),
		chromedp.Click(`form[action="/new"] button[type=submit]`),
		chromedp.WaitVisible(".cover img"),
	)
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(loc, "/p/") {
		t.Fatalf("after publishing the browser is at %q (%v), want a post page", loc, err)
	}
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector(".cover img").naturalWidth === 960`))
	if err != nil || !loaded {
		t.Fatalf("cover image did not load in the browser (naturalWidth check: %v, %v)", loaded, err)
	}
	step("comment",
		chromedp.SendKeys("textarea#body", "Looks right on a phone and a desktop."),
		chromedp.Click(`.comments button[type=submit]`),
		chromedp.WaitVisible(".comment"),
		chromedp.ScrollIntoView("h1"),
	)
	shot("post.png")

	step("log out and see it on the home page",
		chromedp.Click(`form[action="/logout"] button`),
		chromedp.WaitVisible(`a[href="/signup"]`),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(".card h2"),
	)
	first, err := chromedp.Run(ctx, chromedp.Text(".card h2 a"))
	if err != nil || first != "Hello from a real browser" {
		t.Fatalf("the home page starts with %q (%v), want the new post", first, err)
	}
	shot("home.png")
}
