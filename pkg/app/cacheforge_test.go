package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scalestack/scalestack/internal/testwait"
	"github.com/scalestack/scalestack/pkg/app"
	"github.com/scalestack/scalestack/pkg/store"
)

// cacheRejected returns the app's count of cache entries that failed
// authentication, as /status shows it (cache_tier.rejected).
func cacheRejected(tb testing.TB, s *stack) float64 {
	tb.Helper()
	raw, err := json.Marshal(s.App.Status())
	if err != nil {
		tb.Fatal(err)
	}
	var st struct {
		CacheTier map[string]any `json:"cache_tier"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		tb.Fatal(err)
	}
	n, _ := st.CacheTier["rejected"].(float64)
	return n
}

// forge writes value under each of keys on the cache node at addr, as
// anyone who can reach the node can.
func forge(tb testing.TB, addr string, value string, keys ...string) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer rdb.Close()
	for _, k := range keys {
		if err := rdb.Set(context.Background(), k, value, time.Hour).Err(); err != nil {
			tb.Fatalf("SET %s: %v", k, err)
		}
	}
}

// forgedForms returns value as the cache tier once stored it (a D mark and
// the bytes) and as it stores it now, with a made-up expiry and MAC.
func forgedForms(value string) []string {
	future := time.Now().Add(time.Hour).UnixMilli()
	return []string{"D" + value, fmt.Sprintf("D%d.%s%s", future, strings.Repeat("x", 43), value)}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Someone who can write to the cache puts a session record there for a
// session id of their own choosing, naming the victim. The app must not
// take it: /me and posting answer 401, nothing is published as the victim,
// and the forged entry is counted.
func TestForgedCachedSessionIsRejected(t *testing.T) {
	srv := startStoreServer(t, "127.0.0.1:0", t.TempDir())
	t.Cleanup(func() { srv.Close() })
	client := store.NewClient(store.ClientConfig{Resolver: store.StaticResolver{{Name: "primary-1", Addr: srv.Addr(), Primary: true}}})
	t.Cleanup(func() { client.Close() })
	c1 := startCache(t, "127.0.0.1:0")
	s := newCacheStack(t, "127.0.0.1:0", client, cacheNodes(c1), func(c *app.Config, d *app.Deps) {
		c.Sessions = "shared"
		c.CacheMACKey = []byte("this cluster's cache MAC key (test)")
	})
	victim := s.client(t)
	user := victim.signup("victim")
	victimID := user["id"].(string)

	attackerSession := app.NewSessionID()
	record, _ := json.Marshal(map[string]any{"ID": attackerSession, "UserID": victimID, "Handle": "victim",
		"LastLSN": 0, "Expires": time.Now().Add(24 * time.Hour)})
	var keys []string
	for _, prefix := range []string{"ss1:", "ss2:"} { // the prefix before and after entries were sealed
		for _, id := range []string{attackerSession, sha256Hex(attackerSession)} { // plain and hashed ids
			keys = append(keys, prefix+"sess:"+id)
		}
	}
	for _, v := range forgedForms(string(record)) {
		forge(t, c1.Addr(), v, keys...)
		attacker := withCookie(t, s, attackerSession)
		if r := attacker.get("/api/v1/me"); r.Code != http.StatusUnauthorized {
			t.Fatalf("GET /api/v1/me with a forged cached session (%.20q...): status %d, body %.200s; want 401", v, r.Code, r.Body)
		}
		r := attacker.json("POST", "/api/v1/posts", map[string]any{"title": "Forged", "body": "posted as the victim"})
		if r.Code != http.StatusUnauthorized {
			t.Fatalf("POST /api/v1/posts with a forged cached session: status %d, body %.200s; want 401", r.Code, r.Body)
		}
	}
	if n := cacheRejected(t, s); n < 2 {
		t.Errorf("cache_tier.rejected = %v after two forged sessions were read, want at least 2", n)
	}
	posts := victim.get("/api/v1/users/victim").JSON(t)["posts"].([]any)
	if len(posts) != 0 {
		t.Errorf("the victim has %d posts, want none", len(posts))
	}
	want(t, "the victim's own session", victim.get("/api/v1/me"), http.StatusOK)
}

// The store keeps no session id: a dump of the sessions bucket (keys and
// values) does not contain the id in the user's cookie.
func TestStoreHoldsNoSessionID(t *testing.T) {
	db := openDB(t)
	s := newStackOn(t, db, func(c *app.Config, d *app.Deps) { c.Sessions = "shared" })
	c := s.client(t)
	c.signup("hidden")
	id := sessionCookie(t, c)
	pairs, err := db.Scan(context.Background(), "sessions.byid", store.ScanOptions{})
	if err != nil || len(pairs) != 1 {
		t.Fatalf("Scan(sessions.byid) = %d pairs, %v; want the one session", len(pairs), err)
	}
	for _, p := range pairs {
		if strings.Contains(p.Key, id) || strings.Contains(string(p.Value), id) {
			t.Errorf("the store holds the session id in %q = %q", p.Key, p.Value)
		}
	}
	want(t, "me with the session", c.get("/api/v1/me"), http.StatusOK)
}

// A rendered post list (a fragment) or a post written into the cache by
// someone else is not shown: its markup never reaches the page.
func TestForgedCachedFragmentIsIgnored(t *testing.T) {
	c1 := startCache(t, "127.0.0.1:0")
	s := newCacheStack(t, "127.0.0.1:0", openDB(t), cacheNodes(c1))
	author := s.client(t)
	author.signup("writer")
	id := author.post("A real post", "Real *body*.")["id"].(string)
	reader := s.client(t)
	testwait.Until(t, 10*time.Second, "the home page to be cached", func() bool {
		return reader.get("/").Header.Get("X-App-Cache") == "HIT"
	})

	const marker = "FORGED-MARKUP"
	frag := "post-" + id + "\n<script>alert(1)</script><p>" + marker + "</p>"
	for _, v := range forgedForms(frag) {
		forge(t, c1.Addr(), v, "ss1:frag:home::10:1", "ss2:frag:home::10:1")
		r := reader.get("/")
		want(t, "home with a forged fragment", r, http.StatusOK)
		if strings.Contains(r.String(), marker) {
			t.Fatalf("home shows the forged fragment (%.20q...):\n%.600s", v, r.Body)
		}
		wantIn(t, "home with a forged fragment", r, "A real post")
	}
	post, _ := json.Marshal(map[string]any{"ID": id, "Title": "A real post", "Body": "x", "Published": true,
		"HTML": "<script>alert(1)</script><p>" + marker + "</p>", "Author": "writer"})
	for _, v := range forgedForms(string(post)) {
		forge(t, c1.Addr(), v, "ss1:post:"+id, "ss2:post:"+id)
		r := reader.get("/p/" + id)
		want(t, "post page with a forged cached post", r, http.StatusOK)
		if strings.Contains(r.String(), marker) {
			t.Fatalf("the post page shows the forged post's HTML:\n%.600s", r.Body)
		}
		wantIn(t, "post page with a forged cached post", r, "<em>body</em>")
	}
	if n := cacheRejected(t, s); n < 4 {
		t.Errorf("cache_tier.rejected = %v after four forged entries were read, want at least 4", n)
	}
}
