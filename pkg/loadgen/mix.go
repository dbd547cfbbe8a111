package loadgen

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Operations of the mix: what one arrival does as one user.
const (
	// OpBrowse reads a page of the home feed: GET /api/v1/posts?page=N.
	OpBrowse = "browse"
	// OpRead reads one post: GET /api/v1/posts/{id} (counts a view).
	OpRead = "read"
	// OpComment comments on a post: POST /api/v1/posts/{id}/comments.
	OpComment = "comment"
	// OpPost writes and publishes a post: POST /api/v1/posts.
	OpPost = "post"
	// OpSignup signs a new user up: POST /api/v1/signup (a bcrypt hash:
	// the most expensive request of the blog).
	OpSignup = "signup"
	// OpPage loads an HTML page as a browser would: GET / or GET /p/{id}.
	OpPage = "page"
	// OpAnon is an anonymous reader, as most of a blog's readers are: GET
	// / or GET /p/{id} with no cookie, so an edge may answer from its
	// cache (a logged-in user's pages pass it by).
	OpAnon = "anon"
	// OpPostImage writes a post with a cover image, as the editor does:
	// POST /api/v1/posts, then a small generated PNG as multipart to
	// POST /api/v1/posts/{id}/image. Its latency runs from the arrival's
	// due time to the end of the upload (both requests).
	OpPostImage = "post-image"
	// OpSearch searches the blog for a word its posts hold: GET
	// /api/v1/search?q=word. At stage 10 it is the search service's op: a
	// 503 (search is unavailable) is its error.
	OpSearch = "search"
	// OpProfile reads a known user's profile and posts: GET
	// /api/v1/users/{handle} (the users service, with content's posts).
	OpProfile = "profile"
	// OpTip tips the author of a post that is not the user's own: POST
	// /api/v1/posts/{id}/tip with a fresh Idempotency-Key and a test card
	// that succeeds (the payments service). An answer that leaves the
	// outcome unknown (a 503, a timeout) is an error, and the user's next
	// arrival retries that tip with the same key, then checks GET
	// /api/v1/me/payments for a double charge.
	OpTip = "tip"
	// OpVerify is not in the mix: with ReadYourWrites, a user's next
	// arrival after an acknowledged write reads that write back instead.
	OpVerify = "verify"
	// OpLogin is not in the mix: a user whose write was answered 401 (its
	// session is gone, e.g. the app restarted) logs in on its next arrival.
	OpLogin = "login"
)

// mixOps returns the operations a mix may name, in the order summaries
// list them.
func mixOps() []string {
	return []string{OpBrowse, OpRead, OpComment, OpPost, OpSignup, OpPage, OpAnon, OpPostImage, OpSearch, OpProfile, OpTip}
}

// DefaultMix is the mix of `node load` without --mix: mostly reading, as
// on a real blog.
const DefaultMix = "browse=80,read=10,comment=5,post=4,signup=1"

// ServicesMix is a mix for stage 10 (DefaultMix stays as it was, so that
// runs of stages 1 to 9 compare): every service has operations of its own
// (content: browse, page, read, comment, post; search; users: profile;
// payments: tip), so that killing one shows which operations stop (their
// "worst outage") and which keep working.
const ServicesMix = "browse=50,page=15,read=10,comment=5,post=5,search=8,profile=5,tip=2"

// Mix is the share of each operation among arrivals.
type Mix struct {
	entries []mixEntry
	total   int
}

type mixEntry struct {
	op     string
	weight int
}

// ParseMix parses "op=weight,...", e.g. DefaultMix. Weights are relative
// (they need not add up to 100); an operation left out never runs.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		op, w, ok := strings.Cut(f, "=")
		op = strings.TrimSpace(op)
		if !ok {
			return Mix{}, fmt.Errorf("--mix %q: want op=weight, e.g. browse=80", f)
		}
		if !slices.Contains(mixOps(), op) {
			return Mix{}, fmt.Errorf("--mix: unknown operation %q: operations are %s", op, strings.Join(mixOps(), ", "))
		}
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 || n > 1_000_000 {
			return Mix{}, fmt.Errorf("--mix %s: weight %q must be a whole number from 0 to 1000000", op, w)
		}
		if seen[op] {
			return Mix{}, fmt.Errorf("--mix: %s given twice", op)
		}
		seen[op] = true
		if n > 0 {
			m.entries = append(m.entries, mixEntry{op, n})
			m.total += n
		}
	}
	if m.total == 0 {
		return Mix{}, fmt.Errorf("--mix %q: give at least one operation a weight above 0 (operations: %s)", s, strings.Join(mixOps(), ", "))
	}
	return m, nil
}

// Pick returns an operation with probability weight/total.
func (m Mix) Pick(r *rand.Rand) string {
	n := r.IntN(m.total)
	for _, e := range m.entries {
		if n < e.weight {
			return e.op
		}
		n -= e.weight
	}
	return m.entries[len(m.entries)-1].op
}

// Share returns the fraction of arrivals that are op.
func (m Mix) Share(op string) float64 {
	for _, e := range m.entries {
		if e.op == op {
			return float64(e.weight) / float64(m.total)
		}
	}
	return 0
}

// String renders the mix as ParseMix reads it.
func (m Mix) String() string {
	parts := make([]string, len(m.entries))
	for i, e := range m.entries {
		parts[i] = fmt.Sprintf("%s=%d", e.op, e.weight)
	}
	return strings.Join(parts, ",")
}

// IsZero reports whether the mix is empty (not parsed).
func (m Mix) IsZero() bool { return m.total == 0 }
