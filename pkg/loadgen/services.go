package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"
)

// The operations that stage 10 gives a service of its own besides
// content's: search and the users service's profiles. Payments' tip is in
// tip.go.

// search looks for a word of the generated posts' vocabulary, as a reader
// does; newer posts it finds join the pool. A 503 (search unavailable) is
// the op's error, which is the point: the other ops go on.
func (g *generator) search(ctx context.Context, u *user, due time.Time) {
	q := g.searchWords[rand.IntN(len(g.searchWords))]
	var out struct {
		Posts []postJSON `json:"posts"`
	}
	res, _ := g.do(ctx, u, OpSearch, due, http.MethodGet, "/api/v1/search?q="+url.QueryEscape(q), nil, &out)
	g.rec.add(res)
	g.addPosts(out.Posts)
}

// profile reads the page of a known user: as often the author of a known
// post (the blog's seeded authors among them) as one of the load's users.
func (g *generator) profile(ctx context.Context, u *user, due time.Time) {
	handle := g.knownHandle()
	var out struct {
		User struct {
			Handle string `json:"handle"`
		} `json:"user"`
		Posts []postJSON `json:"posts"`
	}
	res, _ := g.do(ctx, u, OpProfile, due, http.MethodGet, "/api/v1/users/"+url.PathEscape(handle), nil, &out)
	if res.ok() && out.User.Handle == "" {
		res.err = fmt.Errorf("%w: GET /api/v1/users/%s: no user", errBadAnswer, handle)
	}
	g.rec.add(res)
	g.addPosts(out.Posts)
}

// knownHandle returns the handle of a user known to exist.
func (g *generator) knownHandle() string {
	if id := g.randomPost(); id != "" && rand.IntN(2) == 0 {
		g.mu.Lock()
		author := g.authors[id]
		g.mu.Unlock()
		if author != "" {
			return author
		}
	}
	// Not pickUser: its generator is the scheduler's alone.
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.users[rand.IntN(len(g.users))].handle
}

// searchTerms are the corpus's words that the blog's search indexes (at
// least 2 letters, not a stop word such as "the"): 4 letters or more is
// both.
func searchTerms(words []string) []string {
	var out []string
	for _, w := range words {
		if len(w) >= 4 {
			out = append(out, w)
		}
	}
	return out
}
